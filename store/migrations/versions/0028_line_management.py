"""Line management (issue 15): no schema change. An archived line is a `lines.state` value
("archived"), the reason a line or campaign was paused stays in `state_reason`, and the tier
and WABA id are line options. Kept so the chain stays linear.

Revision ID: 0028
Revises: 0027
"""

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
