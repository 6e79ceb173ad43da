"""Hooks that let other libraries treat adapterlab's models as they treat Hugging Face PEFT's.

Each module here adapts one library and imports nothing heavy at import time: the library it
adapts is touched only once the user's script has imported it.
"""
