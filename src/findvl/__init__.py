"""findvl: FIND interface over frozen foundation models."""
