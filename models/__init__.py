"""The model: backends, prompts, output parsing. Knows nothing of DICOM, Celery or databases."""
