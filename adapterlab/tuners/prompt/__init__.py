"""Prompt-learning methods: prompt tuning, P-tuning and prefix tuning (configs in ``.config``)."""
