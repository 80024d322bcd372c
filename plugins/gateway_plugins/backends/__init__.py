"""Built-in backends: ``echo`` (a local demo runtime) and ``openai_chat``."""
