"""baseline: the schema at 62cbf10, before migrations

Revision ID: 0001_baseline
Revises: 
Create Date: 2026-11-30 (the schema of main at 62cbf10, frozen; never edit it)
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0001_baseline'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hl7inbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('peer', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('message_control_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('ack_code', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('raw', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('hl7inbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hl7inbox_received_at'), ['received_at'], unique=False)

    op.create_table('monitoringsnapshot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('computed_at', sa.DateTime(), nullable=False),
    sa.Column('as_of', sa.DateTime(), nullable=False),
    sa.Column('current_start', sa.DateTime(), nullable=False),
    sa.Column('reference_start', sa.DateTime(), nullable=False),
    sa.Column('n_current', sa.Integer(), nullable=False),
    sa.Column('n_reference', sa.Integer(), nullable=False),
    sa.Column('drift_score', sa.Float(), nullable=True),
    sa.Column('revision_rate', sa.Float(), nullable=True),
    sa.Column('payload_json', sa.Text(), nullable=True),
    sa.Column('report_html_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('monitoringsnapshot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_monitoringsnapshot_as_of'), ['as_of'], unique=False)
        batch_op.create_index(batch_op.f('ix_monitoringsnapshot_computed_at'), ['computed_at'], unique=False)

    op.create_table('study',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('patient_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('issuer', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('patient_name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('patient_sex', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('patient_birth_date', sa.Date(), nullable=True),
    sa.Column('accession', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('study_date', sa.Date(), nullable=True),
    sa.Column('study_datetime', sa.DateTime(), nullable=True),
    sa.Column('modality', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('body_part', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('institution', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('calling_ae', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('n_instances', sa.Integer(), nullable=False),
    sa.Column('first_received_at', sa.DateTime(), nullable=False),
    sa.Column('last_received_at', sa.DateTime(), nullable=False),
    sa.Column('released_at', sa.DateTime(), nullable=True),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_study_accession'), ['accession'], unique=False)
        batch_op.create_index(batch_op.f('ix_study_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_study_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_study_study_uid'), ['study_uid'], unique=True)

    op.create_table('user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_username'), ['username'], unique=True)

    op.create_table('auditlog',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('user', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('auditlog', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auditlog_at'), ['at'], unique=False)

    op.create_table('instance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sop_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('series_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('sop_class_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('transfer_syntax', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('study_version', sa.Integer(), nullable=False),
    sa.Column('modality', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('view_position', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('manufacturer', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('station_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('photometric', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=True),
    sa.Column('columns', sa.Integer(), nullable=True),
    sa.Column('pixel_spacing', sa.Float(), nullable=True),
    sa.Column('kvp', sa.Float(), nullable=True),
    sa.Column('exposure', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instance_sop_instance_uid'), ['sop_instance_uid'], unique=True)
        batch_op.create_index(batch_op.f('ix_instance_study_id'), ['study_id'], unique=False)

    op.create_table('job',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('study_version', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('enqueued_at', sa.DateTime(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_study_id'), ['study_id'], unique=False)

    op.create_table('monitoringalert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('snapshot_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('as_of', sa.DateTime(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('webhook_state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('webhook_error', sa.Text(), nullable=True),
    sa.Column('acknowledged', sa.Boolean(), nullable=False),
    sa.Column('acknowledged_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['snapshot_id'], ['monitoringsnapshot.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('monitoringalert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_monitoringalert_as_of'), ['as_of'], unique=False)
        batch_op.create_index(batch_op.f('ix_monitoringalert_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_monitoringalert_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_monitoringalert_snapshot_id'), ['snapshot_id'], unique=False)

    op.create_table('signedreport',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('accession', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('message_control_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('result_status', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('critical', sa.Boolean(), nullable=False),
    sa.Column('signed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('signed_at', sa.DateTime(), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'message_control_id')
    )
    with op.batch_alter_table('signedreport', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signedreport_accession'), ['accession'], unique=False)
        batch_op.create_index(batch_op.f('ix_signedreport_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_signedreport_study_id'), ['study_id'], unique=False)

    op.create_table('comparison',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('prior_study_id', sa.Integer(), nullable=True),
    sa.Column('study_version', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('no_prior_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('interval_days', sa.Integer(), nullable=True),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('draft_text', sa.Text(), nullable=True),
    sa.Column('engine', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('engine_version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('structured', sa.Boolean(), nullable=False),
    sa.Column('fallback', sa.Boolean(), nullable=False),
    sa.Column('overlay_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('prior_report', sa.Text(), nullable=True),
    sa.Column('result_json', sa.Text(), nullable=True),
    sa.Column('engine_started_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], ),
    sa.ForeignKeyConstraint(['prior_study_id'], ['study.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_comparison_job_id'), ['job_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_comparison_study_id'), ['study_id'], unique=False)

    op.create_table('imagestatistics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=True),
    sa.Column('mean', sa.Float(), nullable=False),
    sa.Column('std', sa.Float(), nullable=False),
    sa.Column('p05', sa.Float(), nullable=False),
    sa.Column('p95', sa.Float(), nullable=False),
    sa.Column('entropy', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('imagestatistics', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_imagestatistics_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_imagestatistics_study_id'), ['study_id'], unique=False)

    op.create_table('delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('comparison_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sop_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparison.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('comparison_id', 'kind')
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_comparison_id'), ['comparison_id'], unique=False)

    op.create_table('finding',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('comparison_id', sa.Integer(), nullable=False),
    sa.Column('finding', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('side', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('zone', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('change', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('guard', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('evidence_json', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparison.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_finding_comparison_id'), ['comparison_id'], unique=False)

    op.create_table('worklistitem',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('comparison_id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparison.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('comparison_id')
    )
    with op.batch_alter_table('worklistitem', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_worklistitem_comparison_id'), ['comparison_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_worklistitem_priority'), ['priority'], unique=False)
        batch_op.create_index(batch_op.f('ix_worklistitem_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_worklistitem_study_id'), ['study_id'], unique=False)

    op.create_table('review',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('worklist_item_id', sa.Integer(), nullable=False),
    sa.Column('comparison_id', sa.Integer(), nullable=False),
    sa.Column('reviewer', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('final_text', sa.Text(), nullable=True),
    sa.Column('final_labels_json', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=False),
    sa.Column('time_spent_s', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparison.id'], ),
    sa.ForeignKeyConstraint(['worklist_item_id'], ['worklistitem.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('review', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_comparison_id'), ['comparison_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_review_worklist_item_id'), ['worklist_item_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('review', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_worklist_item_id'))
        batch_op.drop_index(batch_op.f('ix_review_comparison_id'))

    op.drop_table('review')
    with op.batch_alter_table('worklistitem', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worklistitem_study_id'))
        batch_op.drop_index(batch_op.f('ix_worklistitem_status'))
        batch_op.drop_index(batch_op.f('ix_worklistitem_priority'))
        batch_op.drop_index(batch_op.f('ix_worklistitem_comparison_id'))

    op.drop_table('worklistitem')
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_finding_comparison_id'))

    op.drop_table('finding')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_comparison_id'))

    op.drop_table('delivery')
    with op.batch_alter_table('imagestatistics', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_imagestatistics_study_id'))
        batch_op.drop_index(batch_op.f('ix_imagestatistics_instance_id'))

    op.drop_table('imagestatistics')
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_comparison_study_id'))
        batch_op.drop_index(batch_op.f('ix_comparison_job_id'))

    op.drop_table('comparison')
    with op.batch_alter_table('signedreport', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signedreport_study_id'))
        batch_op.drop_index(batch_op.f('ix_signedreport_received_at'))
        batch_op.drop_index(batch_op.f('ix_signedreport_accession'))

    op.drop_table('signedreport')
    with op.batch_alter_table('monitoringalert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_monitoringalert_snapshot_id'))
        batch_op.drop_index(batch_op.f('ix_monitoringalert_kind'))
        batch_op.drop_index(batch_op.f('ix_monitoringalert_created_at'))
        batch_op.drop_index(batch_op.f('ix_monitoringalert_as_of'))

    op.drop_table('monitoringalert')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_study_id'))
        batch_op.drop_index(batch_op.f('ix_job_state'))

    op.drop_table('job')
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instance_study_id'))
        batch_op.drop_index(batch_op.f('ix_instance_sop_instance_uid'))

    op.drop_table('instance')
    with op.batch_alter_table('auditlog', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auditlog_at'))

    op.drop_table('auditlog')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_username'))

    op.drop_table('user')
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_study_uid'))
        batch_op.drop_index(batch_op.f('ix_study_state'))
        batch_op.drop_index(batch_op.f('ix_study_patient_id'))
        batch_op.drop_index(batch_op.f('ix_study_accession'))

    op.drop_table('study')
    with op.batch_alter_table('monitoringsnapshot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_monitoringsnapshot_computed_at'))
        batch_op.drop_index(batch_op.f('ix_monitoringsnapshot_as_of'))

    op.drop_table('monitoringsnapshot')
    with op.batch_alter_table('hl7inbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hl7inbox_received_at'))

    op.drop_table('hl7inbox')
