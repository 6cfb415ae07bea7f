"""OpenAI's Responses API (`/v1/responses`): the request, the stateful turn loop with MCP tools, the store and the stream events."""
