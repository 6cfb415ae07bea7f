"""OpenAI's wire format on `/v1`: chat and text completions, embeddings; requests parsed once, answers encoded."""
