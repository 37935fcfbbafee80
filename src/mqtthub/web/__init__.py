"""The HTTP side: FastAPI application, API routes."""
