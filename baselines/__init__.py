"""Built-in fine-tuning methods, one file each. Registered by name in bench/registry.py."""
