"""What runs inside a model's worker process: llama.cpp, the continuous-batching scheduler, sampling, speculative decoding, embeddings. Never imported by the server or kernel process."""
