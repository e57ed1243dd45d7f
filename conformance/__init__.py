"""The judge and the recorder: case matrix, pytest tests, verdicts and reports."""
