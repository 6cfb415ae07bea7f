"""Running models: llama.cpp plumbing, the per-model worker, the token loop, speculative
decoding, and the manager that decides which models are in memory.

Imports only ``models`` and ``errors``; it knows nothing of chat formats or transports.
"""
