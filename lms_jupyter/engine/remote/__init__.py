"""Remote engines (LM Studio, llama-server, vLLM): OpenAI-compatible servers whose models join this manager's model set."""
