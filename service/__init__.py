"""llmtune-receiver: receives, verifies, deduplicates and stores LLMTune webhooks."""
