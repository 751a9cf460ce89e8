-- pbx-crm schema for sqlite at migration 0017; regenerate with: pbx-crm db dump > sql/schema.sqlite.sql

CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

CREATE TABLE audit_log (
	id INTEGER NOT NULL,
	at DATETIME NOT NULL,
	user_id INTEGER,
	actor VARCHAR(64) NOT NULL,
	entity VARCHAR(32) NOT NULL,
	entity_id INTEGER NOT NULL,
	action VARCHAR(32) NOT NULL,
	changes JSON NOT NULL,
	CONSTRAINT pk_audit_log PRIMARY KEY (id),
	CONSTRAINT fk_audit_log_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE SET NULL
);

CREATE TABLE call_legs (
	id INTEGER NOT NULL,
	call_id INTEGER NOT NULL,
	position INTEGER NOT NULL,
	extension VARCHAR(32) NOT NULL,
	user_id INTEGER,
	device VARCHAR(40) DEFAULT '' NOT NULL,
	outcome VARCHAR(10) NOT NULL,
	ring_seconds FLOAT,
	talk_seconds INTEGER,
	CONSTRAINT pk_call_legs PRIMARY KEY (id),
	CONSTRAINT ck_call_legs_outcome CHECK (outcome IN ('answered', 'cancelled', 'noanswer', 'busy', 'unknown')),
	CONSTRAINT fk_call_legs_call_id_calls FOREIGN KEY(call_id) REFERENCES calls (id) ON DELETE CASCADE,
	CONSTRAINT fk_call_legs_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT uq_call_legs_call_id_position UNIQUE (call_id, position)
);

CREATE TABLE calls (
	id INTEGER NOT NULL,
	uniqueid VARCHAR(64) NOT NULL,
	linkedid VARCHAR(64) NOT NULL,
	direction VARCHAR(8) NOT NULL,
	caller_raw VARCHAR(80) DEFAULT '' NOT NULL,
	caller_e164 VARCHAR(16),
	caller_name VARCHAR(200),
	did VARCHAR(64),
	dialed_raw VARCHAR(80),
	rung_extensions VARCHAR(500),
	answered_exten VARCHAR(32),
	answered_by_id INTEGER,
	ringing_at DATETIME NOT NULL,
	answered_at DATETIME,
	ended_at DATETIME,
	disposition VARCHAR(10),
	hangup_cause INTEGER,
	recording_ref VARCHAR(500),
	deal_id INTEGER,
	contact_id INTEGER, answered_device VARCHAR(40), queue VARCHAR(64), hold_seconds INTEGER, called_back_at DATETIME,
	CONSTRAINT pk_calls PRIMARY KEY (id),
	CONSTRAINT ck_calls_direction CHECK (direction IN ('inbound', 'outbound', 'internal')),
	CONSTRAINT ck_calls_disposition CHECK (disposition IS NULL OR disposition IN ('answered', 'missed', 'abandoned', 'busy', 'failed')),
	CONSTRAINT fk_calls_answered_by_id_users FOREIGN KEY(answered_by_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_calls_contact_id_contacts FOREIGN KEY(contact_id) REFERENCES contacts (id) ON DELETE SET NULL,
	CONSTRAINT fk_calls_deal_id_deals FOREIGN KEY(deal_id) REFERENCES deals (id) ON DELETE SET NULL,
	CONSTRAINT uq_calls_uniqueid UNIQUE (uniqueid)
);

CREATE VIRTUAL TABLE contact_name_fts USING fts5(name, content='contacts', content_rowid='id', tokenize='trigram');

CREATE TABLE contact_phones (
	id INTEGER NOT NULL,
	contact_id INTEGER NOT NULL,
	raw VARCHAR(64) NOT NULL,
	e164 VARCHAR(16) NOT NULL,
	label VARCHAR(32),
	CONSTRAINT pk_contact_phones PRIMARY KEY (id),
	CONSTRAINT fk_contact_phones_contact_id_contacts FOREIGN KEY(contact_id) REFERENCES contacts (id) ON DELETE CASCADE,
	CONSTRAINT uq_contact_phones_contact_id_e164 UNIQUE (contact_id, e164)
);

CREATE TABLE contacts (
	id INTEGER NOT NULL,
	name VARCHAR(200) NOT NULL,
	company VARCHAR(200),
	email VARCHAR(254),
	owner_id INTEGER,
	notes TEXT,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	CONSTRAINT pk_contacts PRIMARY KEY (id),
	CONSTRAINT fk_contacts_owner_id_users FOREIGN KEY(owner_id) REFERENCES users (id) ON DELETE SET NULL
);

CREATE VIRTUAL TABLE deal_title_fts USING fts5(title, content='deals', content_rowid='id', tokenize='trigram');

CREATE TABLE deals (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	pipeline_id INTEGER NOT NULL,
	stage_id INTEGER NOT NULL,
	title VARCHAR(200) NOT NULL,
	amount_minor BIGINT DEFAULT '0' NOT NULL,
	currency VARCHAR(3) NOT NULL,
	contact_id INTEGER,
	owner_id INTEGER,
	priority SMALLINT DEFAULT '1' NOT NULL,
	source VARCHAR(8) NOT NULL,
	created_by_id INTEGER,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	stage_entered_at DATETIME NOT NULL,
	last_activity_at DATETIME NOT NULL,
	closed_at DATETIME,
	lost_reason VARCHAR(500),
	version INTEGER NOT NULL,
	CONSTRAINT ck_deals_source CHECK (source IN ('manual', 'call', 'popup')),
	CONSTRAINT ck_deals_amount_minor CHECK (amount_minor >= 0),
	CONSTRAINT ck_deals_priority CHECK (priority BETWEEN 0 AND 2),
	CONSTRAINT fk_deals_contact_id_contacts FOREIGN KEY(contact_id) REFERENCES contacts (id) ON DELETE SET NULL,
	CONSTRAINT fk_deals_created_by_id_users FOREIGN KEY(created_by_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_deals_owner_id_users FOREIGN KEY(owner_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_deals_pipeline_id_pipelines FOREIGN KEY(pipeline_id) REFERENCES pipelines (id),
	CONSTRAINT fk_deals_stage_id_stages FOREIGN KEY(stage_id) REFERENCES stages (id)
);

CREATE TABLE events (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	kind VARCHAR(32) NOT NULL,
	target_user_id INTEGER,
	deal_id INTEGER,
	linkedid VARCHAR(64),
	payload JSON NOT NULL,
	created_at DATETIME NOT NULL,
	CONSTRAINT fk_events_deal_id_deals FOREIGN KEY(deal_id) REFERENCES deals (id) ON DELETE SET NULL,
	CONSTRAINT fk_events_target_user_id_users FOREIGN KEY(target_user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE login_failures (
	id INTEGER NOT NULL,
	login VARCHAR(64) NOT NULL,
	address VARCHAR(64) NOT NULL,
	at DATETIME NOT NULL,
	CONSTRAINT pk_login_failures PRIMARY KEY (id)
);

CREATE TABLE notifications (
	id INTEGER NOT NULL,
	user_id INTEGER NOT NULL,
	kind VARCHAR(32) NOT NULL,
	body TEXT NOT NULL,
	deal_id INTEGER,
	robot_run_id INTEGER,
	created_at DATETIME NOT NULL,
	read_at DATETIME,
	task_id INTEGER, data JSON,
	CONSTRAINT pk_notifications PRIMARY KEY (id),
	CONSTRAINT fk_notifications_deal_id_deals FOREIGN KEY(deal_id) REFERENCES deals (id) ON DELETE CASCADE,
	CONSTRAINT fk_notifications_robot_run_id_robot_runs FOREIGN KEY(robot_run_id) REFERENCES robot_runs (id) ON DELETE SET NULL,
	CONSTRAINT fk_notifications_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE,
	CONSTRAINT fk_notifications_task_id_tasks FOREIGN KEY(task_id) REFERENCES tasks (id) ON DELETE CASCADE
);

CREATE TABLE pipelines (
	id INTEGER NOT NULL,
	name VARCHAR(120) NOT NULL,
	position INTEGER NOT NULL,
	is_default BOOLEAN DEFAULT 0 NOT NULL,
	creates_deals_from_calls BOOLEAN DEFAULT 1 NOT NULL,
	currency VARCHAR(3) NOT NULL,
	created_at DATETIME NOT NULL,
	CONSTRAINT pk_pipelines PRIMARY KEY (id),
	CONSTRAINT uq_pipelines_name UNIQUE (name)
);

CREATE TABLE report_call_days (
	id INTEGER NOT NULL,
	pipeline_id INTEGER NOT NULL,
	day DATE NOT NULL,
	stage_id INTEGER NOT NULL,
	seller_id INTEGER,
	calls INTEGER DEFAULT '0' NOT NULL,
	outbound INTEGER DEFAULT '0' NOT NULL,
	deals_called INTEGER DEFAULT '0' NOT NULL, missed INTEGER DEFAULT '0' NOT NULL,
	CONSTRAINT pk_report_call_days PRIMARY KEY (id),
	CONSTRAINT fk_report_call_days_pipeline_id_pipelines FOREIGN KEY(pipeline_id) REFERENCES pipelines (id) ON DELETE CASCADE,
	CONSTRAINT fk_report_call_days_seller_id_users FOREIGN KEY(seller_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_report_call_days_stage_id_stages FOREIGN KEY(stage_id) REFERENCES stages (id) ON DELETE CASCADE
);

CREATE TABLE report_cycle_buckets (
	id INTEGER NOT NULL,
	pipeline_id INTEGER NOT NULL,
	day DATE NOT NULL,
	seller_id INTEGER,
	bucket SMALLINT NOT NULL,
	wins INTEGER DEFAULT '0' NOT NULL,
	CONSTRAINT pk_report_cycle_buckets PRIMARY KEY (id),
	CONSTRAINT fk_report_cycle_buckets_pipeline_id_pipelines FOREIGN KEY(pipeline_id) REFERENCES pipelines (id) ON DELETE CASCADE,
	CONSTRAINT fk_report_cycle_buckets_seller_id_users FOREIGN KEY(seller_id) REFERENCES users (id) ON DELETE SET NULL
);

CREATE TABLE report_day_zone (
	id INTEGER NOT NULL,
	time_zone VARCHAR(64) NOT NULL,
	CONSTRAINT pk_report_day_zone PRIMARY KEY (id)
);

CREATE TABLE report_days (
	id INTEGER NOT NULL,
	pipeline_id INTEGER NOT NULL,
	day DATE NOT NULL,
	from_stage_id INTEGER,
	to_stage_id INTEGER NOT NULL,
	seller_id INTEGER,
	moves INTEGER DEFAULT '0' NOT NULL,
	stay_seconds BIGINT DEFAULT '0' NOT NULL,
	amount_minor BIGINT DEFAULT '0' NOT NULL,
	cycle_seconds BIGINT DEFAULT '0' NOT NULL,
	CONSTRAINT pk_report_days PRIMARY KEY (id),
	CONSTRAINT fk_report_days_from_stage_id_stages FOREIGN KEY(from_stage_id) REFERENCES stages (id) ON DELETE CASCADE,
	CONSTRAINT fk_report_days_pipeline_id_pipelines FOREIGN KEY(pipeline_id) REFERENCES pipelines (id) ON DELETE CASCADE,
	CONSTRAINT fk_report_days_seller_id_users FOREIGN KEY(seller_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_report_days_to_stage_id_stages FOREIGN KEY(to_stage_id) REFERENCES stages (id) ON DELETE CASCADE
);

CREATE TABLE report_stay_buckets (
	id INTEGER NOT NULL,
	pipeline_id INTEGER NOT NULL,
	day DATE NOT NULL,
	stage_id INTEGER NOT NULL,
	seller_id INTEGER,
	bucket SMALLINT NOT NULL,
	moves INTEGER DEFAULT '0' NOT NULL,
	CONSTRAINT pk_report_stay_buckets PRIMARY KEY (id),
	CONSTRAINT fk_report_stay_buckets_pipeline_id_pipelines FOREIGN KEY(pipeline_id) REFERENCES pipelines (id) ON DELETE CASCADE,
	CONSTRAINT fk_report_stay_buckets_seller_id_users FOREIGN KEY(seller_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_report_stay_buckets_stage_id_stages FOREIGN KEY(stage_id) REFERENCES stages (id) ON DELETE CASCADE
);

CREATE TABLE report_team_days (
	id INTEGER NOT NULL,
	pipeline_id INTEGER NOT NULL,
	day DATE NOT NULL,
	from_stage_id INTEGER,
	to_stage_id INTEGER NOT NULL,
	moves INTEGER DEFAULT '0' NOT NULL,
	stay_seconds BIGINT DEFAULT '0' NOT NULL,
	amount_minor BIGINT DEFAULT '0' NOT NULL,
	cycle_seconds BIGINT DEFAULT '0' NOT NULL,
	CONSTRAINT pk_report_team_days PRIMARY KEY (id),
	CONSTRAINT fk_report_team_days_pipeline_id_pipelines FOREIGN KEY(pipeline_id) REFERENCES pipelines (id) ON DELETE CASCADE,
	CONSTRAINT fk_report_team_days_from_stage_id_stages FOREIGN KEY(from_stage_id) REFERENCES stages (id) ON DELETE CASCADE,
	CONSTRAINT fk_report_team_days_to_stage_id_stages FOREIGN KEY(to_stage_id) REFERENCES stages (id) ON DELETE CASCADE
);

CREATE TABLE report_team_stay_buckets (
	id INTEGER NOT NULL,
	pipeline_id INTEGER NOT NULL,
	day DATE NOT NULL,
	stage_id INTEGER NOT NULL,
	bucket SMALLINT NOT NULL,
	moves INTEGER DEFAULT '0' NOT NULL,
	CONSTRAINT pk_report_team_stay_buckets PRIMARY KEY (id),
	CONSTRAINT fk_report_team_stay_buckets_pipeline_id_pipelines FOREIGN KEY(pipeline_id) REFERENCES pipelines (id) ON DELETE CASCADE,
	CONSTRAINT fk_report_team_stay_buckets_stage_id_stages FOREIGN KEY(stage_id) REFERENCES stages (id) ON DELETE CASCADE
);

CREATE TABLE robot_cursors (
	name VARCHAR(64) NOT NULL,
	position BIGINT DEFAULT '0' NOT NULL,
	updated_at DATETIME NOT NULL,
	CONSTRAINT pk_robot_cursors PRIMARY KEY (name)
);

CREATE TABLE robot_rules (
	id INTEGER NOT NULL,
	stage_id INTEGER NOT NULL,
	name VARCHAR(120) NOT NULL,
	active BOOLEAN DEFAULT 1 NOT NULL,
	condition VARCHAR(32) NOT NULL,
	condition_params JSON NOT NULL,
	action VARCHAR(32) NOT NULL,
	action_params JSON NOT NULL,
	created_by_id INTEGER,
	created_at DATETIME NOT NULL, checked_until DATETIME,
	CONSTRAINT pk_robot_rules PRIMARY KEY (id),
	CONSTRAINT fk_robot_rules_created_by_id_users FOREIGN KEY(created_by_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_robot_rules_stage_id_stages FOREIGN KEY(stage_id) REFERENCES stages (id) ON DELETE CASCADE
);

CREATE TABLE robot_runs (
	id INTEGER NOT NULL,
	rule_id INTEGER NOT NULL,
	deal_id INTEGER NOT NULL,
	run_key VARCHAR(200) NOT NULL,
	status VARCHAR(8) NOT NULL,
	fired_at DATETIME NOT NULL,
	finished_at DATETIME,
	error TEXT,
	answer VARCHAR(16),
	answered_at DATETIME,
	answered_by_id INTEGER,
	snooze_until DATETIME,
	CONSTRAINT pk_robot_runs PRIMARY KEY (id),
	CONSTRAINT ck_robot_runs_answer CHECK (answer IS NULL OR answer IN ('moved_on', 'lower_priority', 'snooze')),
	CONSTRAINT ck_robot_runs_status CHECK (status IN ('pending', 'done', 'failed', 'skipped')),
	CONSTRAINT fk_robot_runs_answered_by_id_users FOREIGN KEY(answered_by_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_robot_runs_deal_id_deals FOREIGN KEY(deal_id) REFERENCES deals (id) ON DELETE CASCADE,
	CONSTRAINT fk_robot_runs_rule_id_robot_rules FOREIGN KEY(rule_id) REFERENCES robot_rules (id) ON DELETE CASCADE,
	CONSTRAINT uq_robot_runs_run_key UNIQUE (run_key)
);

CREATE TABLE stage_history (
	id INTEGER NOT NULL,
	deal_id INTEGER NOT NULL,
	pipeline_id INTEGER NOT NULL,
	from_stage_id INTEGER,
	to_stage_id INTEGER NOT NULL,
	from_entered_at DATETIME,
	moved_at DATETIME NOT NULL,
	moved_by_id INTEGER,
	CONSTRAINT pk_stage_history PRIMARY KEY (id),
	CONSTRAINT fk_stage_history_deal_id_deals FOREIGN KEY(deal_id) REFERENCES deals (id) ON DELETE CASCADE,
	CONSTRAINT fk_stage_history_from_stage_id_stages FOREIGN KEY(from_stage_id) REFERENCES stages (id),
	CONSTRAINT fk_stage_history_moved_by_id_users FOREIGN KEY(moved_by_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_stage_history_pipeline_id_pipelines FOREIGN KEY(pipeline_id) REFERENCES pipelines (id),
	CONSTRAINT fk_stage_history_to_stage_id_stages FOREIGN KEY(to_stage_id) REFERENCES stages (id)
);

CREATE TABLE stage_totals (
	pipeline_id INTEGER NOT NULL,
	stage_id INTEGER NOT NULL,
	owner_key INTEGER NOT NULL,
	deals INTEGER DEFAULT '0' NOT NULL,
	amount_minor BIGINT DEFAULT '0' NOT NULL,
	CONSTRAINT pk_stage_totals PRIMARY KEY (pipeline_id, stage_id, owner_key),
	CONSTRAINT fk_stage_totals_pipeline_id_pipelines FOREIGN KEY(pipeline_id) REFERENCES pipelines (id) ON DELETE CASCADE,
	CONSTRAINT fk_stage_totals_stage_id_stages FOREIGN KEY(stage_id) REFERENCES stages (id) ON DELETE CASCADE
);

CREATE TABLE stages (
	id INTEGER NOT NULL,
	pipeline_id INTEGER NOT NULL,
	name VARCHAR(120) NOT NULL,
	position INTEGER NOT NULL,
	kind VARCHAR(8) NOT NULL,
	is_unsorted BOOLEAN DEFAULT 0 NOT NULL,
	CONSTRAINT pk_stages PRIMARY KEY (id),
	CONSTRAINT ck_stages_kind CHECK (kind IN ('open', 'won', 'lost')),
	CONSTRAINT fk_stages_pipeline_id_pipelines FOREIGN KEY(pipeline_id) REFERENCES pipelines (id) ON DELETE CASCADE,
	CONSTRAINT uq_stages_pipeline_id_name UNIQUE (pipeline_id, name)
);

CREATE TABLE tasks (
	id INTEGER NOT NULL,
	deal_id INTEGER,
	assignee_id INTEGER,
	title VARCHAR(200) NOT NULL,
	kind VARCHAR(8) NOT NULL,
	due_at DATETIME,
	done_at DATETIME,
	done_by_id INTEGER,
	call_id INTEGER,
	created_by_id INTEGER,
	created_at DATETIME NOT NULL, phone VARCHAR(32), missed_calls INTEGER, last_missed_at DATETIME, reminded_at DATETIME,
	CONSTRAINT pk_tasks PRIMARY KEY (id),
	CONSTRAINT ck_tasks_kind CHECK (kind IN ('manual', 'callback', 'robot')),
	CONSTRAINT fk_tasks_assignee_id_users FOREIGN KEY(assignee_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_tasks_call_id_calls FOREIGN KEY(call_id) REFERENCES calls (id) ON DELETE SET NULL,
	CONSTRAINT fk_tasks_created_by_id_users FOREIGN KEY(created_by_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_tasks_deal_id_deals FOREIGN KEY(deal_id) REFERENCES deals (id) ON DELETE CASCADE,
	CONSTRAINT fk_tasks_done_by_id_users FOREIGN KEY(done_by_id) REFERENCES users (id) ON DELETE SET NULL
);

CREATE TABLE timeline_entries (
	id INTEGER NOT NULL,
	deal_id INTEGER NOT NULL,
	kind VARCHAR(12) NOT NULL,
	created_at DATETIME NOT NULL,
	author_id INTEGER,
	body TEXT,
	call_id INTEGER,
	robot_run_id INTEGER,
	data JSON,
	CONSTRAINT pk_timeline_entries PRIMARY KEY (id),
	CONSTRAINT ck_timeline_entries_kind CHECK (kind IN ('created', 'note', 'call', 'stage_move', 'assignment', 'robot', 'task')),
	CONSTRAINT fk_timeline_entries_author_id_users FOREIGN KEY(author_id) REFERENCES users (id) ON DELETE SET NULL,
	CONSTRAINT fk_timeline_entries_call_id_calls FOREIGN KEY(call_id) REFERENCES calls (id) ON DELETE SET NULL,
	CONSTRAINT fk_timeline_entries_deal_id_deals FOREIGN KEY(deal_id) REFERENCES deals (id) ON DELETE CASCADE,
	CONSTRAINT fk_timeline_entries_robot_run_id_robot_runs FOREIGN KEY(robot_run_id) REFERENCES robot_runs (id) ON DELETE SET NULL
);

CREATE TABLE "user_extensions" (
	id INTEGER NOT NULL,
	user_id INTEGER NOT NULL,
	extension VARCHAR(32) NOT NULL,
	devices TEXT,
	pbx VARCHAR(32),
	CONSTRAINT pk_user_extensions PRIMARY KEY (id),
	CONSTRAINT fk_user_extensions_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE,
	CONSTRAINT uq_user_extensions_pbx_extension UNIQUE (pbx, extension)
);

CREATE TABLE users (
	id INTEGER NOT NULL,
	login VARCHAR(64) NOT NULL,
	name VARCHAR(120) NOT NULL,
	password_hash VARCHAR(255) NOT NULL,
	role VARCHAR(8) NOT NULL,
	active BOOLEAN DEFAULT 1 NOT NULL,
	team VARCHAR(64),
	language VARCHAR(8) DEFAULT 'en' NOT NULL,
	time_zone VARCHAR(64),
	created_at DATETIME NOT NULL, email VARCHAR(254),
	CONSTRAINT pk_users PRIMARY KEY (id),
	CONSTRAINT ck_users_role CHECK (role IN ('seller', 'head')),
	CONSTRAINT uq_users_login UNIQUE (login)
);

CREATE TABLE web_sessions (
	id INTEGER NOT NULL,
	token_hash VARCHAR(64) NOT NULL,
	user_id INTEGER NOT NULL,
	csrf_token VARCHAR(64) NOT NULL,
	created_at DATETIME NOT NULL,
	last_seen_at DATETIME NOT NULL,
	expires_at DATETIME NOT NULL,
	CONSTRAINT pk_web_sessions PRIMARY KEY (id),
	CONSTRAINT fk_web_sessions_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE,
	CONSTRAINT uq_web_sessions_token_hash UNIQUE (token_hash)
);

CREATE INDEX ix_audit_log_entity ON audit_log (entity, entity_id);

CREATE INDEX ix_calls_caller_e164 ON calls (caller_e164);

CREATE INDEX ix_calls_contact_id ON calls (contact_id);

CREATE INDEX ix_calls_deal_id ON calls (deal_id);

CREATE INDEX ix_calls_deal_ringing ON calls (deal_id, ringing_at);

CREATE INDEX ix_calls_linkedid ON calls (linkedid);

CREATE INDEX ix_calls_missed_ended ON calls (ended_at) WHERE direction = 'inbound' AND disposition IN ('missed', 'abandoned');

CREATE INDEX ix_calls_missed_ringing ON calls (ringing_at, deal_id, called_back_at) WHERE direction = 'inbound' AND disposition IN ('missed', 'abandoned');

CREATE INDEX ix_contact_phones_e164 ON contact_phones (e164);

CREATE INDEX ix_contacts_owner_id ON contacts (owner_id);

CREATE INDEX ix_deals_board ON deals (stage_id, created_at, id);

CREATE INDEX ix_deals_contact_id ON deals (contact_id);

CREATE INDEX ix_deals_owner_board ON deals (owner_id, stage_id, created_at, id);

CREATE INDEX ix_deals_owner_totals ON deals (owner_id, pipeline_id, stage_id, amount_minor);

CREATE INDEX ix_deals_stage_activity ON deals (stage_id, last_activity_at);

CREATE INDEX ix_deals_stage_entered ON deals (stage_id, stage_entered_at);

CREATE INDEX ix_deals_stage_totals ON deals (pipeline_id, stage_id, amount_minor);

CREATE INDEX ix_events_call ON events (linkedid, kind);

CREATE INDEX ix_events_created_at ON events (created_at);

CREATE INDEX ix_events_deal_id ON events (deal_id);

CREATE INDEX ix_events_target_user_id ON events (target_user_id);

CREATE INDEX ix_login_failures_address ON login_failures (address, at);

CREATE INDEX ix_login_failures_login ON login_failures (login, at);

CREATE INDEX ix_notifications_deal_id ON notifications (deal_id);

CREATE INDEX ix_notifications_robot_run ON notifications (robot_run_id) WHERE robot_run_id IS NOT NULL;

CREATE INDEX ix_notifications_task ON notifications (task_id) WHERE task_id IS NOT NULL;

CREATE INDEX ix_notifications_user_unread ON notifications (user_id, read_at);

CREATE INDEX ix_report_call_days_read ON report_call_days (pipeline_id, stage_id, day, seller_id, calls, outbound, missed, deals_called);

CREATE INDEX ix_report_cycle_buckets_pipeline_day ON report_cycle_buckets (pipeline_id, day);

CREATE INDEX ix_report_days_read ON report_days (pipeline_id, seller_id, from_stage_id, to_stage_id, day, moves, stay_seconds, amount_minor, cycle_seconds);

CREATE INDEX ix_report_stay_buckets_pipeline_day ON report_stay_buckets (pipeline_id, day);

CREATE INDEX ix_report_team_days_pipeline_day ON report_team_days (pipeline_id, day);

CREATE INDEX ix_report_team_stay_buckets_read ON report_team_stay_buckets (pipeline_id, stage_id, bucket, day, moves);

CREATE INDEX ix_robot_rules_stage_id ON robot_rules (stage_id);

CREATE INDEX ix_robot_runs_deal_id ON robot_runs (deal_id);

CREATE INDEX ix_robot_runs_fired ON robot_runs (fired_at);

CREATE INDEX ix_robot_runs_rule_id ON robot_runs (rule_id);

CREATE INDEX ix_robot_runs_snoozed ON robot_runs (rule_id, snooze_until) WHERE snooze_until IS NOT NULL;

CREATE INDEX ix_stage_history_deal ON stage_history (deal_id, moved_at);

CREATE INDEX ix_stage_history_period ON stage_history (pipeline_id, moved_at, from_stage_id, to_stage_id, from_entered_at, deal_id);

CREATE INDEX ix_stage_history_to_stage ON stage_history (to_stage_id, moved_at, deal_id);

CREATE INDEX ix_tasks_assignee_open ON tasks (assignee_id, done_at, due_at);

CREATE INDEX ix_tasks_deal_id ON tasks (deal_id);

CREATE INDEX ix_tasks_open ON tasks (deal_id, due_at) WHERE done_at IS NULL;

CREATE INDEX ix_tasks_to_remind ON tasks (due_at) WHERE done_at IS NULL AND reminded_at IS NULL;

CREATE INDEX ix_timeline_entries_deal ON timeline_entries (deal_id, created_at);

CREATE INDEX ix_timeline_entries_robot_run ON timeline_entries (robot_run_id) WHERE robot_run_id IS NOT NULL;

CREATE INDEX ix_user_extensions_user_id ON user_extensions (user_id);

CREATE INDEX ix_web_sessions_expires_at ON web_sessions (expires_at);

CREATE INDEX ix_web_sessions_user_id ON web_sessions (user_id);

CREATE UNIQUE INDEX uq_pipelines_default ON pipelines (is_default) WHERE is_default;

CREATE UNIQUE INDEX uq_stages_pipeline_unsorted ON stages (pipeline_id) WHERE is_unsorted;

CREATE UNIQUE INDEX uq_tasks_open_callback ON tasks (deal_id) WHERE kind = 'callback' AND done_at IS NULL;

CREATE UNIQUE INDEX uq_user_extensions_extension ON user_extensions (extension) WHERE pbx IS NULL;

CREATE TRIGGER contact_name_fts_after_delete AFTER DELETE ON contacts BEGIN
    INSERT INTO contact_name_fts (contact_name_fts, rowid, name) VALUES ('delete', old.id, old.name);
END;

CREATE TRIGGER contact_name_fts_after_insert AFTER INSERT ON contacts BEGIN
    INSERT INTO contact_name_fts (rowid, name) VALUES (new.id, new.name);
END;

CREATE TRIGGER contact_name_fts_after_update AFTER UPDATE OF id, name ON contacts BEGIN
    INSERT INTO contact_name_fts (contact_name_fts, rowid, name) VALUES ('delete', old.id, old.name);
    INSERT INTO contact_name_fts (rowid, name) VALUES (new.id, new.name);
END;

CREATE TRIGGER deal_title_fts_after_delete AFTER DELETE ON deals BEGIN
    INSERT INTO deal_title_fts (deal_title_fts, rowid, title) VALUES ('delete', old.id, old.title);
END;

CREATE TRIGGER deal_title_fts_after_insert AFTER INSERT ON deals BEGIN
    INSERT INTO deal_title_fts (rowid, title) VALUES (new.id, new.title);
END;

CREATE TRIGGER deal_title_fts_after_update AFTER UPDATE OF id, title ON deals BEGIN
    INSERT INTO deal_title_fts (deal_title_fts, rowid, title) VALUES ('delete', old.id, old.title);
    INSERT INTO deal_title_fts (rowid, title) VALUES (new.id, new.title);
END;
