"""A client for the LLMTune REST API (fine-tunes, inference, batches) and its typed errors."""
