"""Chat formats: Jinja chat templates, reasoning splitters, JSON-schema grammars,
tool-call formats per model family, and the typed events an answer is made of.

Pure text processing: no llama_cpp, no transport.
"""
