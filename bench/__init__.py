"""`python -m bench`: the project's evaluation and training measured against the usual way and the hardware's peak."""
