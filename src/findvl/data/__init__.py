"""Data: COCO / RefCOCO / FIND-Bench readers, the synthetic world, prompt samplers, clicks."""
