"""What exists on disk: GGUF headers, the model catalog, memory estimates, presets.

Nothing here loads a model or imports llama_cpp; every other layer may import it.
"""
