"""The control plane: signed HTTP requests to service contracts and their directories."""
