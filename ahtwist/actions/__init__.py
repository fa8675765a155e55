"""Actions: definitions, registry, loader, processor and the built-ins."""
