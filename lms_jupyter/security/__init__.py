"""Security: scoped API tokens for apps that must not hold the Jupyter token."""
