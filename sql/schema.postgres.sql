-- pbx-crm schema for postgres at migration 0017; regenerate with: pbx-crm db dump > sql/schema.postgres.sql

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

CREATE TABLE public.alembic_version (
    version_num character varying(32) NOT NULL
);

CREATE TABLE public.audit_log (
    id integer NOT NULL,
    at timestamp with time zone NOT NULL,
    user_id integer,
    actor character varying(64) NOT NULL,
    entity character varying(32) NOT NULL,
    entity_id integer NOT NULL,
    action character varying(32) NOT NULL,
    changes jsonb NOT NULL
);

CREATE SEQUENCE public.audit_log_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.audit_log_id_seq OWNED BY public.audit_log.id;

CREATE TABLE public.call_legs (
    id integer NOT NULL,
    call_id integer NOT NULL,
    "position" integer NOT NULL,
    extension character varying(32) NOT NULL,
    user_id integer,
    device character varying(40) DEFAULT ''::character varying NOT NULL,
    outcome character varying(10) NOT NULL,
    ring_seconds double precision,
    talk_seconds integer,
    CONSTRAINT ck_call_legs_outcome CHECK (((outcome)::text = ANY ((ARRAY['answered'::character varying, 'cancelled'::character varying, 'noanswer'::character varying, 'busy'::character varying, 'unknown'::character varying])::text[])))
);

CREATE SEQUENCE public.call_legs_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.call_legs_id_seq OWNED BY public.call_legs.id;

CREATE TABLE public.calls (
    id integer NOT NULL,
    uniqueid character varying(64) NOT NULL,
    linkedid character varying(64) NOT NULL,
    direction character varying(8) NOT NULL,
    caller_raw character varying(80) DEFAULT ''::character varying NOT NULL,
    caller_e164 character varying(16),
    caller_name character varying(200),
    did character varying(64),
    dialed_raw character varying(80),
    rung_extensions character varying(500),
    answered_exten character varying(32),
    answered_by_id integer,
    ringing_at timestamp with time zone NOT NULL,
    answered_at timestamp with time zone,
    ended_at timestamp with time zone,
    disposition character varying(10),
    hangup_cause integer,
    recording_ref character varying(500),
    deal_id integer,
    contact_id integer,
    answered_device character varying(40),
    queue character varying(64),
    hold_seconds integer,
    called_back_at timestamp with time zone,
    CONSTRAINT ck_calls_direction CHECK (((direction)::text = ANY ((ARRAY['inbound'::character varying, 'outbound'::character varying, 'internal'::character varying])::text[]))),
    CONSTRAINT ck_calls_disposition CHECK (((disposition IS NULL) OR ((disposition)::text = ANY ((ARRAY['answered'::character varying, 'missed'::character varying, 'abandoned'::character varying, 'busy'::character varying, 'failed'::character varying])::text[]))))
);

CREATE SEQUENCE public.calls_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.calls_id_seq OWNED BY public.calls.id;

CREATE TABLE public.contact_phones (
    id integer NOT NULL,
    contact_id integer NOT NULL,
    raw character varying(64) NOT NULL,
    e164 character varying(16) NOT NULL,
    label character varying(32)
);

CREATE SEQUENCE public.contact_phones_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.contact_phones_id_seq OWNED BY public.contact_phones.id;

CREATE TABLE public.contacts (
    id integer NOT NULL,
    name character varying(200) NOT NULL,
    company character varying(200),
    email character varying(254),
    owner_id integer,
    notes text,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL
);

CREATE SEQUENCE public.contacts_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.contacts_id_seq OWNED BY public.contacts.id;

CREATE TABLE public.deals (
    id integer NOT NULL,
    pipeline_id integer NOT NULL,
    stage_id integer NOT NULL,
    title character varying(200) NOT NULL,
    amount_minor bigint DEFAULT '0'::bigint NOT NULL,
    currency character varying(3) NOT NULL,
    contact_id integer,
    owner_id integer,
    priority smallint DEFAULT '1'::smallint NOT NULL,
    source character varying(8) NOT NULL,
    created_by_id integer,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    stage_entered_at timestamp with time zone NOT NULL,
    last_activity_at timestamp with time zone NOT NULL,
    closed_at timestamp with time zone,
    lost_reason character varying(500),
    version integer NOT NULL,
    CONSTRAINT ck_deals_amount_minor CHECK ((amount_minor >= 0)),
    CONSTRAINT ck_deals_priority CHECK (((priority >= 0) AND (priority <= 2))),
    CONSTRAINT ck_deals_source CHECK (((source)::text = ANY ((ARRAY['manual'::character varying, 'call'::character varying, 'popup'::character varying])::text[])))
);

CREATE SEQUENCE public.deals_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.deals_id_seq OWNED BY public.deals.id;

CREATE TABLE public.events (
    id integer NOT NULL,
    kind character varying(32) NOT NULL,
    target_user_id integer,
    deal_id integer,
    linkedid character varying(64),
    payload jsonb NOT NULL,
    created_at timestamp with time zone NOT NULL
);

CREATE SEQUENCE public.events_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.events_id_seq OWNED BY public.events.id;

CREATE TABLE public.login_failures (
    id integer NOT NULL,
    login character varying(64) NOT NULL,
    address character varying(64) NOT NULL,
    at timestamp with time zone NOT NULL
);

CREATE SEQUENCE public.login_failures_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.login_failures_id_seq OWNED BY public.login_failures.id;

CREATE TABLE public.notifications (
    id integer NOT NULL,
    user_id integer NOT NULL,
    kind character varying(32) NOT NULL,
    body text NOT NULL,
    deal_id integer,
    robot_run_id integer,
    created_at timestamp with time zone NOT NULL,
    read_at timestamp with time zone,
    task_id integer,
    data jsonb
);

CREATE SEQUENCE public.notifications_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.notifications_id_seq OWNED BY public.notifications.id;

CREATE TABLE public.pipelines (
    id integer NOT NULL,
    name character varying(120) NOT NULL,
    "position" integer NOT NULL,
    is_default boolean DEFAULT false NOT NULL,
    creates_deals_from_calls boolean DEFAULT true NOT NULL,
    currency character varying(3) NOT NULL,
    created_at timestamp with time zone NOT NULL
);

CREATE SEQUENCE public.pipelines_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.pipelines_id_seq OWNED BY public.pipelines.id;

CREATE TABLE public.report_call_days (
    id integer NOT NULL,
    pipeline_id integer NOT NULL,
    day date NOT NULL,
    stage_id integer NOT NULL,
    seller_id integer,
    calls integer DEFAULT 0 NOT NULL,
    outbound integer DEFAULT 0 NOT NULL,
    deals_called integer DEFAULT 0 NOT NULL,
    missed integer DEFAULT 0 NOT NULL
);

CREATE SEQUENCE public.report_call_days_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.report_call_days_id_seq OWNED BY public.report_call_days.id;

CREATE TABLE public.report_cycle_buckets (
    id integer NOT NULL,
    pipeline_id integer NOT NULL,
    day date NOT NULL,
    seller_id integer,
    bucket smallint NOT NULL,
    wins integer DEFAULT 0 NOT NULL
);

CREATE SEQUENCE public.report_cycle_buckets_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.report_cycle_buckets_id_seq OWNED BY public.report_cycle_buckets.id;

CREATE TABLE public.report_day_zone (
    id integer NOT NULL,
    time_zone character varying(64) NOT NULL
);

CREATE SEQUENCE public.report_day_zone_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.report_day_zone_id_seq OWNED BY public.report_day_zone.id;

CREATE TABLE public.report_days (
    id integer NOT NULL,
    pipeline_id integer NOT NULL,
    day date NOT NULL,
    from_stage_id integer,
    to_stage_id integer NOT NULL,
    seller_id integer,
    moves integer DEFAULT 0 NOT NULL,
    stay_seconds bigint DEFAULT '0'::bigint NOT NULL,
    amount_minor bigint DEFAULT '0'::bigint NOT NULL,
    cycle_seconds bigint DEFAULT '0'::bigint NOT NULL
);

CREATE SEQUENCE public.report_days_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.report_days_id_seq OWNED BY public.report_days.id;

CREATE TABLE public.report_stay_buckets (
    id integer NOT NULL,
    pipeline_id integer NOT NULL,
    day date NOT NULL,
    stage_id integer NOT NULL,
    seller_id integer,
    bucket smallint NOT NULL,
    moves integer DEFAULT 0 NOT NULL
);

CREATE SEQUENCE public.report_stay_buckets_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.report_stay_buckets_id_seq OWNED BY public.report_stay_buckets.id;

CREATE TABLE public.report_team_days (
    id integer NOT NULL,
    pipeline_id integer NOT NULL,
    day date NOT NULL,
    from_stage_id integer,
    to_stage_id integer NOT NULL,
    moves integer DEFAULT 0 NOT NULL,
    stay_seconds bigint DEFAULT '0'::bigint NOT NULL,
    amount_minor bigint DEFAULT '0'::bigint NOT NULL,
    cycle_seconds bigint DEFAULT '0'::bigint NOT NULL
);

CREATE SEQUENCE public.report_team_days_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.report_team_days_id_seq OWNED BY public.report_team_days.id;

CREATE TABLE public.report_team_stay_buckets (
    id integer NOT NULL,
    pipeline_id integer NOT NULL,
    day date NOT NULL,
    stage_id integer NOT NULL,
    bucket smallint NOT NULL,
    moves integer DEFAULT 0 NOT NULL
);

CREATE SEQUENCE public.report_team_stay_buckets_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.report_team_stay_buckets_id_seq OWNED BY public.report_team_stay_buckets.id;

CREATE TABLE public.robot_cursors (
    name character varying(64) NOT NULL,
    "position" bigint DEFAULT '0'::bigint NOT NULL,
    updated_at timestamp with time zone NOT NULL
);

CREATE TABLE public.robot_rules (
    id integer NOT NULL,
    stage_id integer NOT NULL,
    name character varying(120) NOT NULL,
    active boolean DEFAULT true NOT NULL,
    condition character varying(32) NOT NULL,
    condition_params jsonb NOT NULL,
    action character varying(32) NOT NULL,
    action_params jsonb NOT NULL,
    created_by_id integer,
    created_at timestamp with time zone NOT NULL,
    checked_until timestamp with time zone
);

CREATE SEQUENCE public.robot_rules_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.robot_rules_id_seq OWNED BY public.robot_rules.id;

CREATE TABLE public.robot_runs (
    id integer NOT NULL,
    rule_id integer NOT NULL,
    deal_id integer NOT NULL,
    run_key character varying(200) NOT NULL,
    status character varying(8) NOT NULL,
    fired_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone,
    error text,
    answer character varying(16),
    answered_at timestamp with time zone,
    answered_by_id integer,
    snooze_until timestamp with time zone,
    CONSTRAINT ck_robot_runs_answer CHECK (((answer IS NULL) OR ((answer)::text = ANY ((ARRAY['moved_on'::character varying, 'lower_priority'::character varying, 'snooze'::character varying])::text[])))),
    CONSTRAINT ck_robot_runs_status CHECK (((status)::text = ANY ((ARRAY['pending'::character varying, 'done'::character varying, 'failed'::character varying, 'skipped'::character varying])::text[])))
);

CREATE SEQUENCE public.robot_runs_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.robot_runs_id_seq OWNED BY public.robot_runs.id;

CREATE TABLE public.stage_history (
    id integer NOT NULL,
    deal_id integer NOT NULL,
    pipeline_id integer NOT NULL,
    from_stage_id integer,
    to_stage_id integer NOT NULL,
    from_entered_at timestamp with time zone,
    moved_at timestamp with time zone NOT NULL,
    moved_by_id integer
);

CREATE SEQUENCE public.stage_history_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.stage_history_id_seq OWNED BY public.stage_history.id;

CREATE TABLE public.stage_totals (
    pipeline_id integer NOT NULL,
    stage_id integer NOT NULL,
    owner_key integer NOT NULL,
    deals integer DEFAULT 0 NOT NULL,
    amount_minor bigint DEFAULT '0'::bigint NOT NULL
);

CREATE TABLE public.stages (
    id integer NOT NULL,
    pipeline_id integer NOT NULL,
    name character varying(120) NOT NULL,
    "position" integer NOT NULL,
    kind character varying(8) NOT NULL,
    is_unsorted boolean DEFAULT false NOT NULL,
    CONSTRAINT ck_stages_kind CHECK (((kind)::text = ANY ((ARRAY['open'::character varying, 'won'::character varying, 'lost'::character varying])::text[])))
);

CREATE SEQUENCE public.stages_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.stages_id_seq OWNED BY public.stages.id;

CREATE TABLE public.tasks (
    id integer NOT NULL,
    deal_id integer,
    assignee_id integer,
    title character varying(200) NOT NULL,
    kind character varying(8) NOT NULL,
    due_at timestamp with time zone,
    done_at timestamp with time zone,
    done_by_id integer,
    call_id integer,
    created_by_id integer,
    created_at timestamp with time zone NOT NULL,
    phone character varying(32),
    missed_calls integer,
    last_missed_at timestamp with time zone,
    reminded_at timestamp with time zone,
    CONSTRAINT ck_tasks_kind CHECK (((kind)::text = ANY ((ARRAY['manual'::character varying, 'callback'::character varying, 'robot'::character varying])::text[])))
);

CREATE SEQUENCE public.tasks_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.tasks_id_seq OWNED BY public.tasks.id;

CREATE TABLE public.timeline_entries (
    id integer NOT NULL,
    deal_id integer NOT NULL,
    kind character varying(12) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    author_id integer,
    body text,
    call_id integer,
    robot_run_id integer,
    data jsonb,
    CONSTRAINT ck_timeline_entries_kind CHECK (((kind)::text = ANY ((ARRAY['created'::character varying, 'note'::character varying, 'call'::character varying, 'stage_move'::character varying, 'assignment'::character varying, 'robot'::character varying, 'task'::character varying])::text[])))
);

CREATE SEQUENCE public.timeline_entries_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.timeline_entries_id_seq OWNED BY public.timeline_entries.id;

CREATE TABLE public.user_extensions (
    id integer NOT NULL,
    user_id integer NOT NULL,
    extension character varying(32) NOT NULL,
    devices text,
    pbx character varying(32)
);

CREATE SEQUENCE public.user_extensions_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.user_extensions_id_seq OWNED BY public.user_extensions.id;

CREATE TABLE public.users (
    id integer NOT NULL,
    login character varying(64) NOT NULL,
    name character varying(120) NOT NULL,
    password_hash character varying(255) NOT NULL,
    role character varying(8) NOT NULL,
    active boolean DEFAULT true NOT NULL,
    team character varying(64),
    language character varying(8) DEFAULT 'en'::character varying NOT NULL,
    time_zone character varying(64),
    created_at timestamp with time zone NOT NULL,
    email character varying(254),
    CONSTRAINT ck_users_role CHECK (((role)::text = ANY ((ARRAY['seller'::character varying, 'head'::character varying])::text[])))
);

CREATE SEQUENCE public.users_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.users_id_seq OWNED BY public.users.id;

CREATE TABLE public.web_sessions (
    id integer NOT NULL,
    token_hash character varying(64) NOT NULL,
    user_id integer NOT NULL,
    csrf_token character varying(64) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    last_seen_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

CREATE SEQUENCE public.web_sessions_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.web_sessions_id_seq OWNED BY public.web_sessions.id;

ALTER TABLE ONLY public.audit_log ALTER COLUMN id SET DEFAULT nextval('public.audit_log_id_seq'::regclass);

ALTER TABLE ONLY public.call_legs ALTER COLUMN id SET DEFAULT nextval('public.call_legs_id_seq'::regclass);

ALTER TABLE ONLY public.calls ALTER COLUMN id SET DEFAULT nextval('public.calls_id_seq'::regclass);

ALTER TABLE ONLY public.contact_phones ALTER COLUMN id SET DEFAULT nextval('public.contact_phones_id_seq'::regclass);

ALTER TABLE ONLY public.contacts ALTER COLUMN id SET DEFAULT nextval('public.contacts_id_seq'::regclass);

ALTER TABLE ONLY public.deals ALTER COLUMN id SET DEFAULT nextval('public.deals_id_seq'::regclass);

ALTER TABLE ONLY public.events ALTER COLUMN id SET DEFAULT nextval('public.events_id_seq'::regclass);

ALTER TABLE ONLY public.login_failures ALTER COLUMN id SET DEFAULT nextval('public.login_failures_id_seq'::regclass);

ALTER TABLE ONLY public.notifications ALTER COLUMN id SET DEFAULT nextval('public.notifications_id_seq'::regclass);

ALTER TABLE ONLY public.pipelines ALTER COLUMN id SET DEFAULT nextval('public.pipelines_id_seq'::regclass);

ALTER TABLE ONLY public.report_call_days ALTER COLUMN id SET DEFAULT nextval('public.report_call_days_id_seq'::regclass);

ALTER TABLE ONLY public.report_cycle_buckets ALTER COLUMN id SET DEFAULT nextval('public.report_cycle_buckets_id_seq'::regclass);

ALTER TABLE ONLY public.report_day_zone ALTER COLUMN id SET DEFAULT nextval('public.report_day_zone_id_seq'::regclass);

ALTER TABLE ONLY public.report_days ALTER COLUMN id SET DEFAULT nextval('public.report_days_id_seq'::regclass);

ALTER TABLE ONLY public.report_stay_buckets ALTER COLUMN id SET DEFAULT nextval('public.report_stay_buckets_id_seq'::regclass);

ALTER TABLE ONLY public.report_team_days ALTER COLUMN id SET DEFAULT nextval('public.report_team_days_id_seq'::regclass);

ALTER TABLE ONLY public.report_team_stay_buckets ALTER COLUMN id SET DEFAULT nextval('public.report_team_stay_buckets_id_seq'::regclass);

ALTER TABLE ONLY public.robot_rules ALTER COLUMN id SET DEFAULT nextval('public.robot_rules_id_seq'::regclass);

ALTER TABLE ONLY public.robot_runs ALTER COLUMN id SET DEFAULT nextval('public.robot_runs_id_seq'::regclass);

ALTER TABLE ONLY public.stage_history ALTER COLUMN id SET DEFAULT nextval('public.stage_history_id_seq'::regclass);

ALTER TABLE ONLY public.stages ALTER COLUMN id SET DEFAULT nextval('public.stages_id_seq'::regclass);

ALTER TABLE ONLY public.tasks ALTER COLUMN id SET DEFAULT nextval('public.tasks_id_seq'::regclass);

ALTER TABLE ONLY public.timeline_entries ALTER COLUMN id SET DEFAULT nextval('public.timeline_entries_id_seq'::regclass);

ALTER TABLE ONLY public.user_extensions ALTER COLUMN id SET DEFAULT nextval('public.user_extensions_id_seq'::regclass);

ALTER TABLE ONLY public.users ALTER COLUMN id SET DEFAULT nextval('public.users_id_seq'::regclass);

ALTER TABLE ONLY public.web_sessions ALTER COLUMN id SET DEFAULT nextval('public.web_sessions_id_seq'::regclass);

ALTER TABLE ONLY public.alembic_version
    ADD CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num);

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT pk_audit_log PRIMARY KEY (id);

ALTER TABLE ONLY public.call_legs
    ADD CONSTRAINT pk_call_legs PRIMARY KEY (id);

ALTER TABLE ONLY public.calls
    ADD CONSTRAINT pk_calls PRIMARY KEY (id);

ALTER TABLE ONLY public.contact_phones
    ADD CONSTRAINT pk_contact_phones PRIMARY KEY (id);

ALTER TABLE ONLY public.contacts
    ADD CONSTRAINT pk_contacts PRIMARY KEY (id);

ALTER TABLE ONLY public.deals
    ADD CONSTRAINT pk_deals PRIMARY KEY (id);

ALTER TABLE ONLY public.events
    ADD CONSTRAINT pk_events PRIMARY KEY (id);

ALTER TABLE ONLY public.login_failures
    ADD CONSTRAINT pk_login_failures PRIMARY KEY (id);

ALTER TABLE ONLY public.notifications
    ADD CONSTRAINT pk_notifications PRIMARY KEY (id);

ALTER TABLE ONLY public.pipelines
    ADD CONSTRAINT pk_pipelines PRIMARY KEY (id);

ALTER TABLE ONLY public.report_call_days
    ADD CONSTRAINT pk_report_call_days PRIMARY KEY (id);

ALTER TABLE ONLY public.report_cycle_buckets
    ADD CONSTRAINT pk_report_cycle_buckets PRIMARY KEY (id);

ALTER TABLE ONLY public.report_day_zone
    ADD CONSTRAINT pk_report_day_zone PRIMARY KEY (id);

ALTER TABLE ONLY public.report_days
    ADD CONSTRAINT pk_report_days PRIMARY KEY (id);

ALTER TABLE ONLY public.report_stay_buckets
    ADD CONSTRAINT pk_report_stay_buckets PRIMARY KEY (id);

ALTER TABLE ONLY public.report_team_days
    ADD CONSTRAINT pk_report_team_days PRIMARY KEY (id);

ALTER TABLE ONLY public.report_team_stay_buckets
    ADD CONSTRAINT pk_report_team_stay_buckets PRIMARY KEY (id);

ALTER TABLE ONLY public.robot_cursors
    ADD CONSTRAINT pk_robot_cursors PRIMARY KEY (name);

ALTER TABLE ONLY public.robot_rules
    ADD CONSTRAINT pk_robot_rules PRIMARY KEY (id);

ALTER TABLE ONLY public.robot_runs
    ADD CONSTRAINT pk_robot_runs PRIMARY KEY (id);

ALTER TABLE ONLY public.stage_history
    ADD CONSTRAINT pk_stage_history PRIMARY KEY (id);

ALTER TABLE ONLY public.stage_totals
    ADD CONSTRAINT pk_stage_totals PRIMARY KEY (pipeline_id, stage_id, owner_key);

ALTER TABLE ONLY public.stages
    ADD CONSTRAINT pk_stages PRIMARY KEY (id);

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT pk_tasks PRIMARY KEY (id);

ALTER TABLE ONLY public.timeline_entries
    ADD CONSTRAINT pk_timeline_entries PRIMARY KEY (id);

ALTER TABLE ONLY public.user_extensions
    ADD CONSTRAINT pk_user_extensions PRIMARY KEY (id);

ALTER TABLE ONLY public.users
    ADD CONSTRAINT pk_users PRIMARY KEY (id);

ALTER TABLE ONLY public.web_sessions
    ADD CONSTRAINT pk_web_sessions PRIMARY KEY (id);

ALTER TABLE ONLY public.call_legs
    ADD CONSTRAINT uq_call_legs_call_id_position UNIQUE (call_id, "position");

ALTER TABLE ONLY public.calls
    ADD CONSTRAINT uq_calls_uniqueid UNIQUE (uniqueid);

ALTER TABLE ONLY public.contact_phones
    ADD CONSTRAINT uq_contact_phones_contact_id_e164 UNIQUE (contact_id, e164);

ALTER TABLE ONLY public.pipelines
    ADD CONSTRAINT uq_pipelines_name UNIQUE (name);

ALTER TABLE ONLY public.robot_runs
    ADD CONSTRAINT uq_robot_runs_run_key UNIQUE (run_key);

ALTER TABLE ONLY public.stages
    ADD CONSTRAINT uq_stages_pipeline_id_name UNIQUE (pipeline_id, name);

ALTER TABLE ONLY public.user_extensions
    ADD CONSTRAINT uq_user_extensions_pbx_extension UNIQUE (pbx, extension);

ALTER TABLE ONLY public.users
    ADD CONSTRAINT uq_users_login UNIQUE (login);

ALTER TABLE ONLY public.web_sessions
    ADD CONSTRAINT uq_web_sessions_token_hash UNIQUE (token_hash);

CREATE INDEX ix_audit_log_entity ON public.audit_log USING btree (entity, entity_id);

CREATE INDEX ix_calls_caller_e164 ON public.calls USING btree (caller_e164);

CREATE INDEX ix_calls_contact_id ON public.calls USING btree (contact_id);

CREATE INDEX ix_calls_deal_id ON public.calls USING btree (deal_id);

CREATE INDEX ix_calls_deal_ringing ON public.calls USING btree (deal_id, ringing_at);

CREATE INDEX ix_calls_linkedid ON public.calls USING btree (linkedid);

CREATE INDEX ix_calls_missed_ended ON public.calls USING btree (ended_at) WHERE (((direction)::text = 'inbound'::text) AND ((disposition)::text = ANY ((ARRAY['missed'::character varying, 'abandoned'::character varying])::text[])));

CREATE INDEX ix_calls_missed_ringing ON public.calls USING btree (ringing_at, deal_id, called_back_at) WHERE (((direction)::text = 'inbound'::text) AND ((disposition)::text = ANY ((ARRAY['missed'::character varying, 'abandoned'::character varying])::text[])));

CREATE INDEX ix_contact_phones_e164 ON public.contact_phones USING btree (e164);

CREATE INDEX ix_contacts_name_trgm ON public.contacts USING gin (lower((name)::text) public.gin_trgm_ops);

CREATE INDEX ix_contacts_owner_id ON public.contacts USING btree (owner_id);

CREATE INDEX ix_deals_board ON public.deals USING btree (stage_id, created_at, id);

CREATE INDEX ix_deals_contact_id ON public.deals USING btree (contact_id);

CREATE INDEX ix_deals_owner_board ON public.deals USING btree (owner_id, stage_id, created_at, id);

CREATE INDEX ix_deals_owner_totals ON public.deals USING btree (owner_id, pipeline_id, stage_id, amount_minor);

CREATE INDEX ix_deals_stage_activity ON public.deals USING btree (stage_id, last_activity_at);

CREATE INDEX ix_deals_stage_entered ON public.deals USING btree (stage_id, stage_entered_at);

CREATE INDEX ix_deals_stage_totals ON public.deals USING btree (pipeline_id, stage_id, amount_minor);

CREATE INDEX ix_deals_title_trgm ON public.deals USING gin (lower((title)::text) public.gin_trgm_ops);

CREATE INDEX ix_events_call ON public.events USING btree (linkedid, kind);

CREATE INDEX ix_events_created_at ON public.events USING btree (created_at);

CREATE INDEX ix_events_deal_id ON public.events USING btree (deal_id);

CREATE INDEX ix_events_target_user_id ON public.events USING btree (target_user_id);

CREATE INDEX ix_login_failures_address ON public.login_failures USING btree (address, at);

CREATE INDEX ix_login_failures_login ON public.login_failures USING btree (login, at);

CREATE INDEX ix_notifications_deal_id ON public.notifications USING btree (deal_id);

CREATE INDEX ix_notifications_robot_run ON public.notifications USING btree (robot_run_id) WHERE (robot_run_id IS NOT NULL);

CREATE INDEX ix_notifications_task ON public.notifications USING btree (task_id) WHERE (task_id IS NOT NULL);

CREATE INDEX ix_notifications_user_unread ON public.notifications USING btree (user_id, read_at);

CREATE INDEX ix_report_call_days_read ON public.report_call_days USING btree (pipeline_id, stage_id, day, seller_id, calls, outbound, missed, deals_called);

CREATE INDEX ix_report_cycle_buckets_pipeline_day ON public.report_cycle_buckets USING btree (pipeline_id, day);

CREATE INDEX ix_report_days_read ON public.report_days USING btree (pipeline_id, seller_id, from_stage_id, to_stage_id, day, moves, stay_seconds, amount_minor, cycle_seconds);

CREATE INDEX ix_report_stay_buckets_pipeline_day ON public.report_stay_buckets USING btree (pipeline_id, day);

CREATE INDEX ix_report_team_days_pipeline_day ON public.report_team_days USING btree (pipeline_id, day);

CREATE INDEX ix_report_team_stay_buckets_read ON public.report_team_stay_buckets USING btree (pipeline_id, stage_id, bucket, day, moves);

CREATE INDEX ix_robot_rules_stage_id ON public.robot_rules USING btree (stage_id);

CREATE INDEX ix_robot_runs_deal_id ON public.robot_runs USING btree (deal_id);

CREATE INDEX ix_robot_runs_fired ON public.robot_runs USING btree (fired_at);

CREATE INDEX ix_robot_runs_rule_id ON public.robot_runs USING btree (rule_id);

CREATE INDEX ix_robot_runs_snoozed ON public.robot_runs USING btree (rule_id, snooze_until) WHERE (snooze_until IS NOT NULL);

CREATE INDEX ix_stage_history_deal ON public.stage_history USING btree (deal_id, moved_at);

CREATE INDEX ix_stage_history_period ON public.stage_history USING btree (pipeline_id, moved_at, from_stage_id, to_stage_id, from_entered_at, deal_id);

CREATE INDEX ix_stage_history_to_stage ON public.stage_history USING btree (to_stage_id, moved_at, deal_id);

CREATE INDEX ix_tasks_assignee_open ON public.tasks USING btree (assignee_id, done_at, due_at);

CREATE INDEX ix_tasks_deal_id ON public.tasks USING btree (deal_id);

CREATE INDEX ix_tasks_open ON public.tasks USING btree (deal_id, due_at) WHERE (done_at IS NULL);

CREATE INDEX ix_tasks_to_remind ON public.tasks USING btree (due_at) WHERE ((done_at IS NULL) AND (reminded_at IS NULL));

CREATE INDEX ix_timeline_entries_deal ON public.timeline_entries USING btree (deal_id, created_at);

CREATE INDEX ix_timeline_entries_robot_run ON public.timeline_entries USING btree (robot_run_id) WHERE (robot_run_id IS NOT NULL);

CREATE INDEX ix_user_extensions_user_id ON public.user_extensions USING btree (user_id);

CREATE INDEX ix_web_sessions_expires_at ON public.web_sessions USING btree (expires_at);

CREATE INDEX ix_web_sessions_user_id ON public.web_sessions USING btree (user_id);

CREATE UNIQUE INDEX uq_pipelines_default ON public.pipelines USING btree (is_default) WHERE is_default;

CREATE UNIQUE INDEX uq_stages_pipeline_unsorted ON public.stages USING btree (pipeline_id) WHERE is_unsorted;

CREATE UNIQUE INDEX uq_tasks_open_callback ON public.tasks USING btree (deal_id) WHERE (((kind)::text = 'callback'::text) AND (done_at IS NULL));

CREATE UNIQUE INDEX uq_user_extensions_extension ON public.user_extensions USING btree (extension) WHERE (pbx IS NULL);

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT fk_audit_log_user_id_users FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.call_legs
    ADD CONSTRAINT fk_call_legs_call_id_calls FOREIGN KEY (call_id) REFERENCES public.calls(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.call_legs
    ADD CONSTRAINT fk_call_legs_user_id_users FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.calls
    ADD CONSTRAINT fk_calls_answered_by_id_users FOREIGN KEY (answered_by_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.calls
    ADD CONSTRAINT fk_calls_contact_id_contacts FOREIGN KEY (contact_id) REFERENCES public.contacts(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.calls
    ADD CONSTRAINT fk_calls_deal_id_deals FOREIGN KEY (deal_id) REFERENCES public.deals(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.contact_phones
    ADD CONSTRAINT fk_contact_phones_contact_id_contacts FOREIGN KEY (contact_id) REFERENCES public.contacts(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.contacts
    ADD CONSTRAINT fk_contacts_owner_id_users FOREIGN KEY (owner_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.deals
    ADD CONSTRAINT fk_deals_contact_id_contacts FOREIGN KEY (contact_id) REFERENCES public.contacts(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.deals
    ADD CONSTRAINT fk_deals_created_by_id_users FOREIGN KEY (created_by_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.deals
    ADD CONSTRAINT fk_deals_owner_id_users FOREIGN KEY (owner_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.deals
    ADD CONSTRAINT fk_deals_pipeline_id_pipelines FOREIGN KEY (pipeline_id) REFERENCES public.pipelines(id);

ALTER TABLE ONLY public.deals
    ADD CONSTRAINT fk_deals_stage_id_stages FOREIGN KEY (stage_id) REFERENCES public.stages(id);

ALTER TABLE ONLY public.events
    ADD CONSTRAINT fk_events_deal_id_deals FOREIGN KEY (deal_id) REFERENCES public.deals(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.events
    ADD CONSTRAINT fk_events_target_user_id_users FOREIGN KEY (target_user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.notifications
    ADD CONSTRAINT fk_notifications_deal_id_deals FOREIGN KEY (deal_id) REFERENCES public.deals(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.notifications
    ADD CONSTRAINT fk_notifications_robot_run_id_robot_runs FOREIGN KEY (robot_run_id) REFERENCES public.robot_runs(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.notifications
    ADD CONSTRAINT fk_notifications_task_id_tasks FOREIGN KEY (task_id) REFERENCES public.tasks(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.notifications
    ADD CONSTRAINT fk_notifications_user_id_users FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_call_days
    ADD CONSTRAINT fk_report_call_days_pipeline_id_pipelines FOREIGN KEY (pipeline_id) REFERENCES public.pipelines(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_call_days
    ADD CONSTRAINT fk_report_call_days_seller_id_users FOREIGN KEY (seller_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.report_call_days
    ADD CONSTRAINT fk_report_call_days_stage_id_stages FOREIGN KEY (stage_id) REFERENCES public.stages(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_cycle_buckets
    ADD CONSTRAINT fk_report_cycle_buckets_pipeline_id_pipelines FOREIGN KEY (pipeline_id) REFERENCES public.pipelines(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_cycle_buckets
    ADD CONSTRAINT fk_report_cycle_buckets_seller_id_users FOREIGN KEY (seller_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.report_days
    ADD CONSTRAINT fk_report_days_from_stage_id_stages FOREIGN KEY (from_stage_id) REFERENCES public.stages(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_days
    ADD CONSTRAINT fk_report_days_pipeline_id_pipelines FOREIGN KEY (pipeline_id) REFERENCES public.pipelines(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_days
    ADD CONSTRAINT fk_report_days_seller_id_users FOREIGN KEY (seller_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.report_days
    ADD CONSTRAINT fk_report_days_to_stage_id_stages FOREIGN KEY (to_stage_id) REFERENCES public.stages(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_stay_buckets
    ADD CONSTRAINT fk_report_stay_buckets_pipeline_id_pipelines FOREIGN KEY (pipeline_id) REFERENCES public.pipelines(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_stay_buckets
    ADD CONSTRAINT fk_report_stay_buckets_seller_id_users FOREIGN KEY (seller_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.report_stay_buckets
    ADD CONSTRAINT fk_report_stay_buckets_stage_id_stages FOREIGN KEY (stage_id) REFERENCES public.stages(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_team_days
    ADD CONSTRAINT fk_report_team_days_from_stage_id_stages FOREIGN KEY (from_stage_id) REFERENCES public.stages(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_team_days
    ADD CONSTRAINT fk_report_team_days_pipeline_id_pipelines FOREIGN KEY (pipeline_id) REFERENCES public.pipelines(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_team_days
    ADD CONSTRAINT fk_report_team_days_to_stage_id_stages FOREIGN KEY (to_stage_id) REFERENCES public.stages(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_team_stay_buckets
    ADD CONSTRAINT fk_report_team_stay_buckets_pipeline_id_pipelines FOREIGN KEY (pipeline_id) REFERENCES public.pipelines(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.report_team_stay_buckets
    ADD CONSTRAINT fk_report_team_stay_buckets_stage_id_stages FOREIGN KEY (stage_id) REFERENCES public.stages(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.robot_rules
    ADD CONSTRAINT fk_robot_rules_created_by_id_users FOREIGN KEY (created_by_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.robot_rules
    ADD CONSTRAINT fk_robot_rules_stage_id_stages FOREIGN KEY (stage_id) REFERENCES public.stages(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.robot_runs
    ADD CONSTRAINT fk_robot_runs_answered_by_id_users FOREIGN KEY (answered_by_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.robot_runs
    ADD CONSTRAINT fk_robot_runs_deal_id_deals FOREIGN KEY (deal_id) REFERENCES public.deals(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.robot_runs
    ADD CONSTRAINT fk_robot_runs_rule_id_robot_rules FOREIGN KEY (rule_id) REFERENCES public.robot_rules(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.stage_history
    ADD CONSTRAINT fk_stage_history_deal_id_deals FOREIGN KEY (deal_id) REFERENCES public.deals(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.stage_history
    ADD CONSTRAINT fk_stage_history_from_stage_id_stages FOREIGN KEY (from_stage_id) REFERENCES public.stages(id);

ALTER TABLE ONLY public.stage_history
    ADD CONSTRAINT fk_stage_history_moved_by_id_users FOREIGN KEY (moved_by_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.stage_history
    ADD CONSTRAINT fk_stage_history_pipeline_id_pipelines FOREIGN KEY (pipeline_id) REFERENCES public.pipelines(id);

ALTER TABLE ONLY public.stage_history
    ADD CONSTRAINT fk_stage_history_to_stage_id_stages FOREIGN KEY (to_stage_id) REFERENCES public.stages(id);

ALTER TABLE ONLY public.stage_totals
    ADD CONSTRAINT fk_stage_totals_pipeline_id_pipelines FOREIGN KEY (pipeline_id) REFERENCES public.pipelines(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.stage_totals
    ADD CONSTRAINT fk_stage_totals_stage_id_stages FOREIGN KEY (stage_id) REFERENCES public.stages(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.stages
    ADD CONSTRAINT fk_stages_pipeline_id_pipelines FOREIGN KEY (pipeline_id) REFERENCES public.pipelines(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT fk_tasks_assignee_id_users FOREIGN KEY (assignee_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT fk_tasks_call_id_calls FOREIGN KEY (call_id) REFERENCES public.calls(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT fk_tasks_created_by_id_users FOREIGN KEY (created_by_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT fk_tasks_deal_id_deals FOREIGN KEY (deal_id) REFERENCES public.deals(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT fk_tasks_done_by_id_users FOREIGN KEY (done_by_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.timeline_entries
    ADD CONSTRAINT fk_timeline_entries_author_id_users FOREIGN KEY (author_id) REFERENCES public.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.timeline_entries
    ADD CONSTRAINT fk_timeline_entries_call_id_calls FOREIGN KEY (call_id) REFERENCES public.calls(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.timeline_entries
    ADD CONSTRAINT fk_timeline_entries_deal_id_deals FOREIGN KEY (deal_id) REFERENCES public.deals(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.timeline_entries
    ADD CONSTRAINT fk_timeline_entries_robot_run_id_robot_runs FOREIGN KEY (robot_run_id) REFERENCES public.robot_runs(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.user_extensions
    ADD CONSTRAINT fk_user_extensions_user_id_users FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.web_sessions
    ADD CONSTRAINT fk_web_sessions_user_id_users FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;
