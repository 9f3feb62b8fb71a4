"""Alembic migrations of the coordinator database (``gensyn coordinator --migrate``)."""
