"""Blob read authorization: who uploaded each blob, and which tasks use it.

Revision ID: 0002
Revises: 0001

A database adopted from before migrations already has these tables
(``create_all`` made them), so each is created only when missing. The
blobs of tasks stored before this revision are indexed from their JSON
(bundle, results, checkpoints; see ``_blob_index.backfill``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gensyn_jupyter.coordinator._blob_index import backfill

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``blob_uploaders`` and ``task_blobs``; index the tasks already stored."""
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "blob_uploaders" not in have:
        op.create_table(
            "blob_uploaders",
            sa.Column("sha256", sa.String(length=64), nullable=False),
            sa.Column("principal", sa.String(length=80), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("sha256", "principal"),
        )
    if "task_blobs" not in have:
        op.create_table(
            "task_blobs",
            sa.Column("task_id", sa.String(length=32), nullable=False),
            sa.Column("sha256", sa.String(length=64), nullable=False),
            sa.Column("role", sa.String(length=16), nullable=False),
            sa.ForeignKeyConstraint(["task_id"], ["tasks.id"]),
            sa.PrimaryKeyConstraint("task_id", "sha256"),
        )
        op.create_index(op.f("ix_task_blobs_sha256"), "task_blobs", ["sha256"], unique=False)
    backfill(op.get_bind())


def downgrade() -> None:
    """Drop both tables (blobs become readable by hash again in an older version)."""
    op.drop_index(op.f("ix_task_blobs_sha256"), table_name="task_blobs")
    op.drop_table("task_blobs")
    op.drop_table("blob_uploaders")
