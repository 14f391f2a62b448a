"""Scenario files: parse, execute on the model, observe."""
