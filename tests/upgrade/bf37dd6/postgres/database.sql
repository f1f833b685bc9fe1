--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: alembic_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.alembic_version (
    version_num character varying(32) NOT NULL
);


--
-- Name: api_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.api_tokens (
    id integer NOT NULL,
    name character varying(64) NOT NULL,
    token_sha256 character varying(64) NOT NULL,
    created_at double precision NOT NULL,
    revoked_at double precision,
    last_used_at double precision
);


--
-- Name: api_tokens_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.api_tokens_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: api_tokens_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.api_tokens_id_seq OWNED BY public.api_tokens.id;


--
-- Name: associations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.associations (
    id integer NOT NULL,
    calling_ae character varying(16) NOT NULL,
    called_ae character varying(16) NOT NULL,
    peer character varying(64) NOT NULL,
    started_at double precision NOT NULL,
    ended_at double precision NOT NULL,
    stored integer NOT NULL,
    failed integer NOT NULL,
    outcome character varying(16) NOT NULL,
    statuses text NOT NULL
);


--
-- Name: associations_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.associations_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: associations_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.associations_id_seq OWNED BY public.associations.id;


--
-- Name: batch_files; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.batch_files (
    id integer NOT NULL,
    item_id integer NOT NULL,
    path text NOT NULL
);


--
-- Name: batch_files_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.batch_files_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: batch_files_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.batch_files_id_seq OWNED BY public.batch_files.id;


--
-- Name: batch_items; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.batch_items (
    id integer NOT NULL,
    run_id integer NOT NULL,
    study_key character varying(255) NOT NULL,
    study_instance_uid character varying(64) NOT NULL,
    source_ref text NOT NULL,
    state character varying(16) NOT NULL,
    reason text NOT NULL,
    job_id integer,
    fetched_at double precision,
    finished_at double precision
);


--
-- Name: batch_items_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.batch_items_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: batch_items_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.batch_items_id_seq OWNED BY public.batch_items.id;


--
-- Name: batch_runs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.batch_runs (
    id integer NOT NULL,
    name character varying(128) NOT NULL,
    source text NOT NULL,
    kind character varying(16) NOT NULL,
    options text NOT NULL,
    model_key character varying(255) NOT NULL,
    prompt text NOT NULL,
    conversion character varying(32) NOT NULL,
    send_srs boolean NOT NULL,
    created_at double precision NOT NULL,
    scanned_at double precision,
    finished_at double precision
);


--
-- Name: batch_runs_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.batch_runs_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: batch_runs_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.batch_runs_id_seq OWNED BY public.batch_runs.id;


--
-- Name: conversation_turns; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.conversation_turns (
    id integer NOT NULL,
    job_id integer NOT NULL,
    job_version integer NOT NULL,
    seq integer NOT NULL,
    role character varying(16) NOT NULL,
    kind character varying(16) NOT NULL,
    text text NOT NULL,
    image_ref character varying(128) DEFAULT ''::character varying NOT NULL,
    question_id integer,
    generated_tokens integer,
    created_at double precision NOT NULL
);


--
-- Name: conversation_turns_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.conversation_turns_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: conversation_turns_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.conversation_turns_id_seq OWNED BY public.conversation_turns.id;


--
-- Name: deliveries; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.deliveries (
    id integer NOT NULL,
    job_id integer NOT NULL,
    destination character varying(128) NOT NULL,
    state character varying(16) NOT NULL,
    attempts integer NOT NULL,
    detail text NOT NULL,
    updated_at double precision NOT NULL,
    next_attempt_at double precision DEFAULT '0'::double precision NOT NULL
);


--
-- Name: deliveries_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.deliveries_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: deliveries_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.deliveries_id_seq OWNED BY public.deliveries.id;


--
-- Name: installation; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.installation (
    id integer NOT NULL,
    uid_seed character varying(64) NOT NULL,
    created_at double precision NOT NULL
);


--
-- Name: installation_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.installation_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: installation_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.installation_id_seq OWNED BY public.installation.id;


--
-- Name: instances; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.instances (
    id integer NOT NULL,
    sop_instance_uid character varying(64) NOT NULL,
    sop_class_uid character varying(64) NOT NULL,
    study_instance_uid character varying(64) NOT NULL,
    series_instance_uid character varying(64) NOT NULL,
    modality character varying(16) NOT NULL,
    transfer_syntax_uid character varying(64) NOT NULL,
    path text NOT NULL,
    size bigint NOT NULL,
    sha256 character varying(64) NOT NULL,
    calling_ae character varying(16) NOT NULL,
    peer character varying(64) NOT NULL,
    received_at double precision NOT NULL,
    admission character varying(16) NOT NULL,
    skip_reason text NOT NULL,
    purged_at double precision
);


--
-- Name: instances_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.instances_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: instances_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.instances_id_seq OWNED BY public.instances.id;


--
-- Name: job_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.job_events (
    id integer NOT NULL,
    job_id integer NOT NULL,
    state character varying(16) NOT NULL,
    at double precision NOT NULL,
    detail text NOT NULL
);


--
-- Name: job_events_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.job_events_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: job_events_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.job_events_id_seq OWNED BY public.job_events.id;


--
-- Name: jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.jobs (
    id integer NOT NULL,
    study_instance_uid character varying(64) NOT NULL,
    version integer NOT NULL,
    sop_instance_uid character varying(64) NOT NULL,
    state character varying(16) NOT NULL,
    reason text NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    attempts integer NOT NULL,
    source_header text NOT NULL,
    conversion text NOT NULL,
    result text,
    sr_sop_instance_uid character varying(64) NOT NULL,
    sr_path text NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    model_input bytea,
    worker character varying(128) DEFAULT ''::character varying NOT NULL,
    holder character varying(128) DEFAULT ''::character varying NOT NULL,
    held_since double precision DEFAULT '0'::double precision NOT NULL,
    enqueued_at double precision DEFAULT '0'::double precision NOT NULL,
    next_attempt_at double precision DEFAULT '0'::double precision NOT NULL,
    retries integer DEFAULT 0 NOT NULL,
    last_error text DEFAULT ''::text NOT NULL,
    batch_run_id integer,
    origin character varying(16) DEFAULT 'dicom'::character varying NOT NULL,
    rule character varying(64) DEFAULT ''::character varying NOT NULL,
    destination_set character varying(64) DEFAULT ''::character varying NOT NULL,
    destinations text DEFAULT ''::text NOT NULL,
    page_paths text DEFAULT ''::text NOT NULL
);


--
-- Name: jobs_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.jobs_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: jobs_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.jobs_id_seq OWNED BY public.jobs.id;


--
-- Name: questions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.questions (
    id integer NOT NULL,
    job_id integer NOT NULL,
    text text NOT NULL,
    asked_by character varying(128) DEFAULT ''::character varying NOT NULL,
    asked_at double precision NOT NULL,
    state character varying(16) DEFAULT 'waiting'::character varying NOT NULL,
    route character varying(16) DEFAULT ''::character varying NOT NULL,
    holder character varying(128) DEFAULT ''::character varying NOT NULL,
    held_since double precision DEFAULT '0'::double precision NOT NULL,
    answered_at double precision,
    job_version integer,
    reply_text text DEFAULT ''::text NOT NULL,
    reasoning text DEFAULT ''::text NOT NULL,
    answer text DEFAULT ''::text NOT NULL,
    status character varying(16) DEFAULT ''::character varying NOT NULL,
    generated_tokens integer,
    reused_turn integer,
    worker character varying(128) DEFAULT ''::character varying NOT NULL,
    error text DEFAULT ''::text NOT NULL,
    addendum character varying(16) DEFAULT ''::character varying NOT NULL,
    addendum_sop_instance_uid character varying(64) DEFAULT ''::character varying NOT NULL,
    addendum_path text DEFAULT ''::text NOT NULL,
    addendum_detail text DEFAULT ''::text NOT NULL
);


--
-- Name: questions_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.questions_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: questions_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.questions_id_seq OWNED BY public.questions.id;


--
-- Name: review_labels; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.review_labels (
    id integer NOT NULL,
    review_id integer NOT NULL,
    label character varying(64) NOT NULL,
    verdict character varying(16) NOT NULL,
    model_present integer NOT NULL,
    reviewer_present integer
);


--
-- Name: review_labels_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.review_labels_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: review_labels_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.review_labels_id_seq OWNED BY public.review_labels.id;


--
-- Name: reviews; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.reviews (
    id integer NOT NULL,
    job_id integer NOT NULL,
    study_instance_uid character varying(64) NOT NULL,
    reviewer character varying(64) NOT NULL,
    created_at double precision NOT NULL,
    note text NOT NULL,
    current boolean NOT NULL
);


--
-- Name: reviews_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.reviews_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: reviews_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.reviews_id_seq OWNED BY public.reviews.id;


--
-- Name: studies; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.studies (
    id integer NOT NULL,
    study_instance_uid character varying(64) NOT NULL,
    first_received_at double precision NOT NULL,
    last_received_at double precision NOT NULL,
    assembled_at double precision,
    outcome character varying(255) NOT NULL,
    rule character varying(255) DEFAULT ''::character varying NOT NULL
);


--
-- Name: studies_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.studies_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: studies_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.studies_id_seq OWNED BY public.studies.id;


--
-- Name: workers; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.workers (
    name character varying(128) NOT NULL,
    kind character varying(16) NOT NULL,
    host character varying(128) NOT NULL,
    pid integer NOT NULL,
    queues character varying(64) NOT NULL,
    started_at double precision NOT NULL,
    last_beat double precision NOT NULL,
    stopped_at double precision
);


--
-- Name: api_tokens id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens ALTER COLUMN id SET DEFAULT nextval('public.api_tokens_id_seq'::regclass);


--
-- Name: associations id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.associations ALTER COLUMN id SET DEFAULT nextval('public.associations_id_seq'::regclass);


--
-- Name: batch_files id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_files ALTER COLUMN id SET DEFAULT nextval('public.batch_files_id_seq'::regclass);


--
-- Name: batch_items id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_items ALTER COLUMN id SET DEFAULT nextval('public.batch_items_id_seq'::regclass);


--
-- Name: batch_runs id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_runs ALTER COLUMN id SET DEFAULT nextval('public.batch_runs_id_seq'::regclass);


--
-- Name: conversation_turns id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.conversation_turns ALTER COLUMN id SET DEFAULT nextval('public.conversation_turns_id_seq'::regclass);


--
-- Name: deliveries id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries ALTER COLUMN id SET DEFAULT nextval('public.deliveries_id_seq'::regclass);


--
-- Name: installation id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.installation ALTER COLUMN id SET DEFAULT nextval('public.installation_id_seq'::regclass);


--
-- Name: instances id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.instances ALTER COLUMN id SET DEFAULT nextval('public.instances_id_seq'::regclass);


--
-- Name: job_events id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_events ALTER COLUMN id SET DEFAULT nextval('public.job_events_id_seq'::regclass);


--
-- Name: jobs id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.jobs ALTER COLUMN id SET DEFAULT nextval('public.jobs_id_seq'::regclass);


--
-- Name: questions id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.questions ALTER COLUMN id SET DEFAULT nextval('public.questions_id_seq'::regclass);


--
-- Name: review_labels id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.review_labels ALTER COLUMN id SET DEFAULT nextval('public.review_labels_id_seq'::regclass);


--
-- Name: reviews id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.reviews ALTER COLUMN id SET DEFAULT nextval('public.reviews_id_seq'::regclass);


--
-- Name: studies id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.studies ALTER COLUMN id SET DEFAULT nextval('public.studies_id_seq'::regclass);


--
-- Data for Name: alembic_version; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.alembic_version (version_num) FROM stdin;
0010
\.


--
-- Data for Name: api_tokens; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.api_tokens (id, name, token_sha256, created_at, revoked_at, last_used_at) FROM stdin;
\.


--
-- Data for Name: associations; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.associations (id, calling_ae, called_ae, peer, started_at, ended_at, stored, failed, outcome, statuses) FROM stdin;
1	STORESCU	CXRGATEWAY	127.0.0.1:49622	1796622168.3651533	1796622168.4299197	1	0	released	{}
2	STORESCU	CXRGATEWAY	127.0.0.1:49628	1796622170.1582398	1796622170.2193375	1	0	released	{}
3	STORESCU	CXRGATEWAY	127.0.0.1:54410	1796622174.7979171	1796622174.8603299	1	0	released	{}
\.


--
-- Data for Name: batch_files; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.batch_files (id, item_id, path) FROM stdin;
\.


--
-- Data for Name: batch_items; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.batch_items (id, run_id, study_key, study_instance_uid, source_ref, state, reason, job_id, fetched_at, finished_at) FROM stdin;
\.


--
-- Data for Name: batch_runs; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.batch_runs (id, name, source, kind, options, model_key, prompt, conversion, send_srs, created_at, scanned_at, finished_at) FROM stdin;
\.


--
-- Data for Name: conversation_turns; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.conversation_turns (id, job_id, job_version, seq, role, kind, text, image_ref, question_id, generated_tokens, created_at) FROM stdin;
1	1	1	0	user	findings	Find abnormalities and support devices.	model_input sha256:e9e711b73df8bb0b121ed67aec29f087a7fdec20a9a87505b93aee40940bed26	\N	\N	1796622169.661139
2	1	1	1	assistant	findings	MOCK BACKEND OUTPUT - not produced by NV-Reason-CXR-3B; wiring test only. This deterministic response verifies input loading, prompt wiring, and JSON output only; it does not assert clinical findings.		\N	0	1796622169.661139
\.


--
-- Data for Name: deliveries; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.deliveries (id, job_id, destination, state, attempts, detail, updated_at, next_attempt_at) FROM stdin;
\.


--
-- Data for Name: installation; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.installation (id, uid_seed, created_at) FROM stdin;
1	53b3d8b5fc2532dfa3010cbb4bb3bf0c	1796622167.9562504
\.


--
-- Data for Name: instances; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.instances (id, sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid, modality, transfer_syntax_uid, path, size, sha256, calling_ae, peer, received_at, admission, skip_reason, purged_at) FROM stdin;
1	1.2.826.0.1.3680043.8.498.90570152656524160535596906114072430309	1.2.840.10008.5.1.4.1.1.1	1.2.826.0.1.3680043.8.498.68106502798340701598093618801354702832	1.2.826.0.1.3680043.8.498.18695606292141624903327294793561915570	CR	1.2.840.10008.1.2.1	@DATA_DIR@/spool/1.2.826.0.1.3680043.8.498.68106502798340701598093618801354702832/1.2.826.0.1.3680043.8.498.90570152656524160535596906114072430309.dcm	8978	c92e339fc089e5ea51c7d94fdaf3127d07aefc47ee77fa848012c94dcf070d80	STORESCU	127.0.0.1:49622	1796622168.4242065	admitted		\N
2	1.2.826.0.1.3680043.8.498.13469186819121368003653574637393177947	1.2.840.10008.5.1.4.1.1.1	1.2.826.0.1.3680043.8.498.21879322338448223620013249581449987700	1.2.826.0.1.3680043.8.498.20878753522513528607140818948534198211	CR	1.2.840.10008.1.2.1	@DATA_DIR@/spool/1.2.826.0.1.3680043.8.498.21879322338448223620013249581449987700/1.2.826.0.1.3680043.8.498.13469186819121368003653574637393177947.dcm	8978	d01c3272cd9cc5bb7d4f5b7e9e685cf0220f0d615f5c8be3edd70f165d1e8216	STORESCU	127.0.0.1:49628	1796622170.2148767	admitted		\N
3	1.2.826.0.1.3680043.8.498.88419022496101370905701883978474761934	1.2.840.10008.5.1.4.1.1.1	1.2.826.0.1.3680043.8.498.59850479928336972502909399284307605012	1.2.826.0.1.3680043.8.498.62947796406114015251816214433560959094	CR	1.2.840.10008.1.2.1	@DATA_DIR@/spool/1.2.826.0.1.3680043.8.498.59850479928336972502909399284307605012/1.2.826.0.1.3680043.8.498.88419022496101370905701883978474761934.dcm	8978	f3099178f047e8888c4322b0cef4ecea9f2be0fd57170ae305b2bdc1b78f15db	STORESCU	127.0.0.1:54410	1796622174.856014	admitted		\N
\.


--
-- Data for Name: job_events; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.job_events (id, job_id, state, at, detail) FROM stdin;
1	1	received	1796622168.4242065	1 instance(s)
2	1	queued	1796622169.5640955	admitted 1.2.826.0.1.3680043.8.498.90570152656524160535596906114072430309
3	1	preparing	1796622169.6005445	
4	1	prepared	1796622169.6228278	
5	1	inferring	1796622169.6367364	worker serve-12343@vm
6	1	reporting	1796622169.668103	
7	1	delivering	1796622170.0838192	SR 2.25.21803002009992395485589774111330017478
8	1	done	1796622170.094259	no destination: SR kept in the outbox
9	2	received	1796622170.2148767	1 instance(s)
10	2	queued	1796622171.3212593	admitted 1.2.826.0.1.3680043.8.498.13469186819121368003653574637393177947
11	2	preparing	1796622171.4031057	
12	2	failed	1796622171.4136484	conversion failed: the decoded image is blank (every pixel is 100): corrupt data, or no exposure
13	3	received	1796622174.856014	1 instance(s)
14	3	queued	1796622176.0068817	admitted 1.2.826.0.1.3680043.8.498.88419022496101370905701883978474761934
15	3	preparing	1796622176.0368757	
16	3	prepared	1796622176.0698402	
\.


--
-- Data for Name: jobs; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.jobs (id, study_instance_uid, version, sop_instance_uid, state, reason, created_at, updated_at, attempts, source_header, conversion, result, sr_sop_instance_uid, sr_path, priority, model_input, worker, holder, held_since, enqueued_at, next_attempt_at, retries, last_error, batch_run_id, origin, rule, destination_set, destinations, page_paths) FROM stdin;
1	1.2.826.0.1.3680043.8.498.68106502798340701598093618801354702832	1	1.2.826.0.1.3680043.8.498.90570152656524160535596906114072430309	done		1796622169.5640955	1796622170.094259	0	{"00080016": {"Value": ["1.2.840.10008.5.1.4.1.1.1"], "vr": "UI"}, "00080018": {"Value": ["1.2.826.0.1.3680043.8.498.90570152656524160535596906114072430309"], "vr": "UI"}, "00080060": {"Value": ["CR"], "vr": "CS"}, "00100010": {"Value": [{"Alphabetic": "Test^Synthetic"}], "vr": "PN"}, "00100020": {"Value": ["SYN001"], "vr": "LO"}, "00180015": {"Value": ["CHEST"], "vr": "CS"}, "00185101": {"Value": ["PA"], "vr": "CS"}, "0020000D": {"Value": ["1.2.826.0.1.3680043.8.498.68106502798340701598093618801354702832"], "vr": "UI"}, "0020000E": {"Value": ["1.2.826.0.1.3680043.8.498.18695606292141624903327294793561915570"], "vr": "UI"}, "00200013": {"Value": [1], "vr": "IS"}, "00280002": {"Value": [1], "vr": "US"}, "00280004": {"Value": ["MONOCHROME2"], "vr": "CS"}, "00280010": {"Value": [64], "vr": "US"}, "00280011": {"Value": [64], "vr": "US"}, "00280100": {"Value": [16], "vr": "US"}, "00280101": {"Value": [12], "vr": "US"}, "00280102": {"Value": [11], "vr": "US"}, "00280103": {"Value": [0], "vr": "US"}}	mimic-v1	{"backend": "mock", "is_mock": true, "model_id": "nvidia/NV-Reason-CXR-3B", "model_revision": "056bd0383b35226554da9dc5866e095df174ae19", "prompt": "Find abnormalities and support devices.", "status": "mock", "answer_status": "unparseable", "labels": [], "near_misses": {}, "unknown_labels": [], "format_ok": false, "notes": [], "findings_text": "MOCK BACKEND OUTPUT - not produced by NV-Reason-CXR-3B; wiring test only. This deterministic response verifies input loading, prompt wiring, and JSON output only; it does not assert clinical findings.", "findings_tokens": 0, "findings_hit_token_limit": false, "answer": null, "reasoning": "", "report_text": "", "report_tokens": null, "report_truncated": false, "report_reasoning": "", "report_sections": [], "batch_id": "d59ab2123a044e65b94b06f0df81c4e5", "batch_size": 1, "worker": "serve-12343@vm"}	2.25.21803002009992395485589774111330017478	@DATA_DIR@/outbox/1.2.826.0.1.3680043.8.498.68106502798340701598093618801354702832/2.25.21803002009992395485589774111330017478.dcm	0	\\x89504e470d0a1a0a0000000d494844520000008c0000008c080200000021a2d66900001b56494441547801ed9dd1921b47ae44af37fcffbfec9be4210f93a8ea6ece6824efc376844b898304aa0aad1ec98e8dd8bffe6ff7fcf5d75f0337691d1b61afd6365447a0bb56488ab0f56ad63304ce0109fff39fff44c480d033c2f0410c87e810dd2b7d9a44af61c355df4e9b7ffef7fc374c80df3ddb93bc7d315b5fc3d66947d8ab7b341c3a21a43b084911b65ecd7a86c03920bf7f074c38b861047d20cd69b2f295d0bf79f41a02e52da2738cbff3cf9f7972e26cc4da3b72e723a25f1be264659713c387a90ffb38d3b56d5264491902097b8d6d4de5188f9794748f09ddb035a71feb2889ff9f7ffec1436daf9a0379ba5b93689b0c8d6d5ddbcf9df510c630780c4e473362700be58af6d33029b22304de936f0bb636279dd3fe962f29dbf4a40843fa09e401aa2356f2b02e6de52d52dee1aa2f0d6bc99630e035151ec8aae85043848f7d24889cf63b2f29ed9c2362bbbaab7e6da46c320c6b16824d7d24d2f628055f0d19c779c9c832be01130ebe0d8588acf691b4c869ff8e8361f5da70d54dac029a8ae0d91a4c3d5d8f2f2fe6410cd79291324c93be397c25cdd7ac04b186e73ccd63e071a327b8fd3a0c83b433d7f9e697c49f37be80213856d6c109c9462b5a5b4576ac3a07eff0134ffb3fd7cceec8cfa09375e23a257430d48030db22d7797b49b106f97488962862ee943a02bd1a4c0d81df95ec58e936e049c8383410a6895c81c7708884bd75c23c29c9dadc8d5adcbdaf9f6963239ad0adabd4e9fff69212fffa43f7b54f7820eb1042aae8b05d29dca63e87df6eb21d37fb9a6a911461d6d67a1ab6b62a22a77dbca43818106b87e85e75365447a063436c576184da1204a95e4f78526459a9bab3076797ce4a06ec1dd50cda5001776d5bb44ffcad299744b4018e2767fbf92fe936925f7b3cdce76db82485bd0e3ec2382588116a0827c57ac4efaec74f36b42b251a229aaca1244378fbdb5dca7a2e84bd9a6d38744248cc88ed2a8c505302d9ae97866dd5256422abcd496d0d81cd87be275f4b9a13200c75348936cc957ff24ba2759af6b3428922fe6856e0d1fa89e7a8f61b3c13fcc68ece5d91ada33d006dcd22f00c1bceb33f9352e6f8225a774a1d81d60901ba02f11c413ceb6a15a9be92249e2d8f01de0688fe5550b5f2101ef74d38cca48047a9e16933a99cf63b5f528a53c963a386236518a1ad054d20eaada0c33625bcf45c1a68d5efc0e66bca7793142592118e5ab30a3a749fa472dab73f9312f3c417c1fa64b75f9b44fb980ac9bfe7ca233ad5dad46a6e32341d0273fa4e8db053e836a4892182b59b87005da9325c05a70aef14a13b12ae06381dba4f786adfbea4a483b6cf4825e459cdcfcca3d56a93e854a49b7a2b2e0da38a710c7812f6f8569ba324b50d8588acf691003bdcda28cc95df5e12134f0e71b45abc359855745b9b931d6b9c838cf0d230fc5f0a99da51c93a479c706a5d93d27f62c0ef8e5d4e87905cf9ed2f0e493085ac3e0dd58ad8864e28511cd9eeded782ed155f29eedf2e6e15426a180cb72270cbe946ca55d1bba33bd57aeb5c0d92883c99c9e64b0a3d79d8696be854349e864de0638d61906f843fd2e4f37d33c798eff37c2ca3163a3c54b513b2f25ce7f11787b8b95b569f866afae21126844b5aa8dba6bfc5a5a1cd473a4dd6ab1e99e1f16f4b80f7e4eb4dd80ade1e9ddd56a85f326c0993624544e73a5ffe9252f3e71f2ec3e9b33b4278196af0e6432484b00eff3d3967071c29433a9c78928a67d8088588dcf7ed4b72fa49338b754d8aec494a0f02bfab7015f45cb94443843a5942c9082ddf8a9e6c1b0677acf1907295586e4aa127646b6ba88ec85dbef02551e9fd1142da053611b619c376b57c9bbd847dff0fcd0eb1b716da10929e9036343932b4078db3fbe400867d98e8b77f994d65501ec4581342da202445d81a73133dabd04ccafbe80cc1335284ac6dd0d6867493dbf968c76158c3d13986b579484e95354f6fd46474c6993585175f12955c3b6b3fa6844da2e14042f59148c9514a7ee9b934d0ca29d8593166673884e1280c0f21bb7a48b95a6b4993e85ce7ed2581fa7f2f4701d7663df9af3e6da61564f086433b5fee6976842b5f0d10f9100921ac69d8e12df71c3429c31637d3fde9f2268f7479228f1a36ef86af97149a8027dae7c95ebf8e1461d2115d0ed14cb6c3ad5eabb6b64bc82c8e6ccc6ecd0ebe0de94ceac8b0f500b3a9b51e60f4193c3379fb927aca58d7ff5510dc6952d285addd2fc29286ad2f0d6dfe8676766bed18d33604da0491564d568f369c183cc008b73c63997f05d7d7b3667c3d44f549ca56084b06378ca1af143e42087d486d0d5da82102ddabce7bf2f18308d836b2aec3a053c320f15b828750784b3f2fdbb5c0dcf7ed4bba9b6f4b12eb4316ae473808bcd71476b8ea4b03251fdad6feff2261f4df3b40eefbf625d925893c097b250b31d5d01470ace7d9d170d476489f2f5d7bfcfeed6ed19dedb68313ae068859046dd9a8499bc7310cf118e6bef34b0afac5c7ee43a4ed2027e138e808d7420d8835dcf2f409e751d3fc895f7f196ba279d4b627ba6dea16e8ac8a6e08ccdc5e5fd2ddf9fa1b5acf14bd9294744a1df1a5c7ad11b44d8711ae44c3896058abc121926a1b93624dd6d02692d513b2da68026f433bf1acd9dcfaed4bfad26457b35b6e458f58c37a265227bcfb681ba24374936c9110e2aa307b73ecbe8661181ec2e121141a2aba4960f3dcf727bf24ba1fad3ddc23cf11f7e631d0a7c9b6ca6bafd9a4c892320412bac6d3864b4ff7b4b021bad761eb54f4db4b4ad00fd6234271b2da1027abe613cf27a99feaf3c95ef1f0563e34ff0e5beefbfa9212f0f44e210959e16ac5307479ebf68f9b13c63078ca21975c837e05676843f43604de936f4b1f63ebc1d02909701b06ca11ae8a94672cf3cfa4a47992cba38e58c9c3fafe168543d86d70c34b83ce73918be5593d40536b2889f0b14f1335229e08d6413a652b8566c92a3296b7978463bc0c4227d8593b9a95ace2d2b31ab8f9daea881cdd79f06d2844647517c9ead9da46a1a1c23e921391b1bcfdb8c3dac342af64346dc34819c6d35782afa4f99a9520d6f09ca7790c3c6ef404b75f8761109cedc1704edc48611f0ae56b1892b9bdbe24ac8e3ba2356e0966d723ae81f20e7f50f79dd7b63dc7640dd594dba40d746b0359cdbd9d85111988617bdc74c09330ad5e5f123ec7ad084737194d4f52c349382e40982672c5f0cb11597beb84795292b5f9d1193077b64974876d6b8d67ebbcd53f7f6c4678c13b7efc386d43da1ab20555af979416799253a89b503c560a07fc6af8ed267de7b1a9a916f110666dada7616b0d1f8ad48ec7c2c14fc28ce5ed2561ed61a15d3bd57d4f78526459dde28e5f7f7bec6c3c6407ec1dd5b9b6ba05dcb56dd13e29694d0749441be0eea20d8f4e439d88513eb284ebc5435e7f26993e12a3cb91ad39975c4f33f808e3972046a8219c14eb11bfbb5e3f5e088586a37c3548701e15da6788519e6c1b46183324f3fcc29744cd764da32dff45e841471f78dfb90d83771352bda6503fcece0ee22eed69a86e6193869febdb4bf2373e658e1b1e2839e9fb89e7a4fcaba95cfb1b3bf664d1d997097200da0e1b9eb66d091d7ec79a9bbebe2436f0f28af0d6db730cc3b8524abcff28c7c99a261636a79c420d40c316d1231c665a018f52c3d3e64e6d37c240ea7694e71f6c361982e9b5adb748f6f59212e4495aa1156eb88a4b036dd7c2269f3489ff7eebc3bf2c70556cbd5a85e8903334694ff4e84308ef147d7ab567c3559f5f3cd9b79744fd5ab392b193068f8e6184a32a611bd2c410c1dacd4380ae5419ae825dc23b45e88e84ab01ee393b6cb3068eda29b4861186e7e92a48569dc91efe99a4db2e4d86669b014f424f70e2e914feac884e450fbe0d8588ac3691003bdcda46a12182f2e8ae1d9e2f85b7979402469c15b1b638e23a2f0d3abf21bcf6b6b667d14e38c4351de00a5308b89a1df510ea3154581821fc4591d9bebda4a3765f7d07eb114368426a180cb72270cb735a53184638aea38742d76183b71943937523b38aaea2a72ba961380a6f2f29fff074e5d0310cf28df0479a7cbeafc362a0845d0e0fd12019363c0dffa4cedc5e5fd2c9c63f32df34592775b26952dba9c13b3b6c84eca52664bb013bdcdad61de933d6ae1da95f096f2f29ff7cfb71ef9c2f4d128e839e87fab50d9110c23afcf7e4e3efc76d8043d45bc3ead9da7adf36c811761b3ca184291922ce4797eccf7c49ee1da1ce090825238ce1e4c99db9f6f00cde1e52ae295ccd664d49dc4812d150dd024f3b3babe6ee868a319ce6a4b2fecc4bb2f5565c5ea0abbc73441eef100f84951275c4303421b51ada835e3d3940523c7d9876a24736707dd26785e7246dbff392d69d4238e24811b2b6415b1b7256f938f7111fb60e47e76df37872aaac79a845dcc17e9ac3d93b8e0e2365e795f764ccba51b2df7949366ac14e4d86be34e03fba4cb24991d54978c7f34beadd31b4d99261639786106a3fe4c376199e4fe6cb2f699c75849e46ae1829f9100921aca9eaf0967bfe582365d8e266ba3f5ddee4912e4fe451c3e636145238b861e6bb1a92d580ee55bff0cb2fc9caef89f504dd27d9ad61f06d4821a923c3d603cc31acf548a38f5c7393ad3eff44b6252bfce825fdc84eebde126727518c316d43a04d10e9d064f568c389e168df4bae61881f19dda72fa9af94738c10c281486d0d5da82102ddabce7bf2f18308d836b2aec3a053c320f15b828750784b3f2fdbb52bd7d6a26de8350be9d1e9547cfa922c3811ec7462f82f4c31fa7ffd60e7a3fbf997f4a56b8fdfbf63589dedb68313ae06885944b6d0d90428192721b4f0f3ec79897d7ee025d92b62ec3ac276a23520d670cbd92829b3882dbfbb1ece36746d7b06b7a4053aab820e860abadd7cefcfca0719e17bf55b74fb92f2cfd18337598b708ef0c4a0731547a7849b55a443b44f8736378b684fc86ac3006f433bf16cb3da229ce1808627a3b3f648ecff65f6e84c273c1b78206d4374886e92f284105785d99ba3feb5463d0cf29bfbfe70bc6774fb95120b0d157a10f216d1fde86c183d78873dba519530d9fd4b5aad5bb2eed4e4a4646b0b6c6e0824744df3365c7a388ce5f81baea7b5ff9a5a49375cb3e7e4f7bea4defb7ca776fe88fe95a1fcc8017eaac9e5dce697346e4e18d3e0391fe4926bd0afe0926d88de86c07bf26de9636c3d183a25016ec34039c27508e66bff647d80ebe8dc57274d0c5711c3f58fbbcb2e6bdf2dc9f9d623c60934b58692081fb768a24674f3413a652b8566c91031845c4ee6d2f06193efbc248e38ce7d121edd79f06d2844647523c9ead9da46a1a1c23e92739177d01bade61f7e4963b311ba3d7ccd4a86c150412b434460048f8627b8fd3a0c83e06c0f8673e2460afb50285f4352cd4f08298fa41371f92263b8fe9246d3cfc3bef35ae5a11186714a227884dde7997cf324684f172675f27b7f2d1c7d7e5378f29292e2f99ba373827150c2f8e48ae19723b2a6ca5b25cc93306b730d2deedec341d3846e5db56a77dca6ec10e105a3f3e01fc2d06e836c433b5bb58a938190ca7afd259d7459b76c92738fa39b35d5225942aad47a2e0d3acf85c750e897fc88f864745b4fa03ce2f19f8538d33df596d6ba359cdc24d7de66e1ae6d8bf6496d6b5a4922da00773b6d78741aea448cf291251c93e1003d9c6120dcb61ab09b9802daf3fac79d95111c4e31c2e6a4862121c41541e12df77c9a8cb658da201970141a0e31ca936dc30863263b860bc7dce50efa1b826e29bcfe71e7c68a71a0c1fbcea62206ef26a47a6d3fcece0ee22eed69a86e6193861feaf1864eaa2e9d5b43c3e8efbca4a333e5daddfdc836784f161d0313c449db61c3d3b62da1c3bfb85e0e64350c92f0f192d6db72e7ac3199458c5027b348766b181c4f43caedb64d0d4f9b3b4573b26e84c1506193211856dbe8609f9e8c29fc863431dc8ae159c3eb2f69d46cb709cce1c6f974760a8fab2944879437694f349bf6d69a3b459f5edbd67ce8cb8b5f1ad2f04b9e98db4f98f5ed2f0e9e921110c6648860b55d429ef82358a9325c05b62e44677547499b07347524c2396a0af5a0095d5b447755421e0b9fe082d3649847a847818130ebdb97747482d1d4b0af2d54248b01b20d8588d5bf1a24dd762df4186d8b6ee7f0fc8e70cc7dddc237d1ce68c388b797b4b638216358c3d9b368271ce29a5ab8c21402ae662f3d847a0c15164608ff8c70d6eb76b7f7f07c3a1b46f84c3e5f12a71f7730dc8ac02dcf06a6308cb00f8479bb0e1b1e1b9a6db26e64564121213d5dedb912fd7a4232c4956b4038f1c113925a0d120ddfff92d65d3f21dc2aabcfa882076a90b433104fc33fac9de6c9be5b4fa05c9126777cfb8c14e8efbca4edd4d2cec10d9114590b1186c3d0e53af1ac7d241a86a0db803f12f67c8f1a6e3d0db77ac0c7dfeec64d1c137b9b952bda201c229e109f351c24ce2d19905018817645d86df084128782190e94dced8fdf88e8acf17cfe50a5dff0b2cfe34ba292b2f335871ee7c63f787b48b9c6bf9acd9a92781e494443750b3cedecacfae8e2e178868190ac1ebbada23dd4c663b9c2bd86c0fce98f3bef1c91a7f786b0b2873a22a40d4d48ad86f6a0574f0e60db3e4c3bd1231bb83eeeb2a64ec8279d57cf20845911d9aec51d1ffcedce3171c4a33b1cf1938b8dce71ae4d4272b8ac79fa004dc616c339b2eea24d0364cb19d64875e834edb68ad533086143b5a92f7f49eb3972ee3ebae110867680640d5113ea21e53af86ac6b9e55dfb89765847e64b430adb13bd860d570d79fb8b83771b222184357b7778cb3d074dcab0c5cd747fbabcc9235d9ec8a386cd6d28a47070c3dc7c3524ab01ddabfe86e9d3e156b7a775cc840dd59d8abefe9272beed1107df8614923a326c3dc0dcc45a4730fac83537d96a67b1cd7e0e3fe9e3b8db1c6d88b883b7bfaa40580f5f92b35b0f3dc6b40d813641a45593d5a30d27060f30c24bae6108e632e037c2f33e648ffe4f7bb31d2f80b5775fff1f490f7fdc31af5ed3c850015cc3109e6108943c2d6f24d9612014ded27512346d07376c117d196260ca76bed7bd2d18de5005ebf4495a85304cd6924e451f7e49b5dd9f962773f99347e9f16df73d32849362b5f68e37ffd527065263a53070f392f80d1ec776589d6dc3e084ab016216d17b356933275e573c2b876cb35bb876c87456d8e4c820575065a808478f7518363fee7207aec19a462d6eb9fa91c5f6c0e64de8d0448d700bb9252db4294679f3e8f5897fc0414638cc23ec51920af109895eb986cfc5fc928e4e0937abc821a27d3ae47c4db00db2da30c053a24101b49b7c150ea253ce2e1083d9f6ab3f147473dd8a15a6b9908d08733b53f34bf2feb1e6315400d73044d85a3f70780887e768dfe69644a08720747523c9d6df366634fc1d0e03231622845f12d9a5fdaf2f29e7eb237a9ac10d3113baa6aa0d971e76b11c7f438fa1b0bfe44474c313db36c594b729e06a3822cdd588b19acd16d13caf9774729acf53bf3294cf77f903ce4ce77297e15943462c274c5bf92adcb453af1f77fd3bd45903b721508322db748ad0ec36d51e4ea9df506107aae48a5ccf146652c218b65c5b044d9a6c75db5adba1a11ad1ebf877dea478e8f37a49e3103d8ba4d65012e16393266a44771ba453b65268960c114348ae37f8082f0d9f34a127ad1ca8d02d5603e6b1f609472ae1e6c7dd98c5361422b2ba8d64f56c6da3d050611fc9b9c8ad7aa3d51cc30a07f9c49392ed1740ab74f0e9e6eb7ff5894d83252ddebe24eed643417b67433d926c834db27a30e0d4c6f9d6f092bb630bab10ae6e2d3972c27b70a344c3ea69821ea461ebee19dea9e8f92579198461ba48227884ecc1fa4cbe7912b4a70b93ca395683dd46e19f0919d376afa47cda104848561da1bf451b8e3cf85f5f5262cab62b231fa99eecd630fc0929e9423ddd213ae7d1ac7f08c36ea2763b097e3bcb5771320d52ab41a248db36abb786409eb5eaed4bca1db8468bd41076aac9a5a1bb75130b1159c763e1e0bf186616971db61e8798f236c8151808d795dd577e445e2fc98928e8452834249b55123142c8e88347a7213657da1a6e85b722cb76819a8781d0ec89e826da806b13cd8a94686e7d04071fe1ebc79d4351a43bdab509ba496c23840c380a0d8760d3c0c121acdd1f1bd7d3a361f863fbf663f388ef35f96ae1eb258d6b24644cbd0a11867a9a44f3988d78b25b73750bf851b69dabcec856b82597cead618510b9229b764a3d0c09216335bca5d7bfdd79a58c693c4985b421f55b4fdba81ac426ff96c8c9cfb75e0d8324f4a1554285a921dc74f0f3f0ed4b62e269a4b029f028a5cd9781301c85f6d7a05fe18e43e43e12cb43784262d8f2a7e5f62b4d9aac7a78b6614335e26865f7648f0ca458311ffec5c16145f0a42082cb3479a49fbf681b1e0b35405cf54bb682bb6d53c04b436c5ff2382ffb4be8634867c2751de5abe188bcbe2467f49cf6ed7da823d2226bc3d63a81a68e44781a0e33fd1b461ba2bb0a320cc2134e9376ae5a8f020fe1ba26dbb0fff38fcd63e86794ac29c8eb25d1c859afefe3dc40a1a7b1cf2086dd2d9aed46f6f785b9fc79730ccc486787e823124e9522e128e9f05ccf1f770e97a9393bc3d500f1261a063154581821fc33a2673776ec7975ca120dc902252da8c580b3b35fd2f34bf2580c6e5d3528b6b31e851da6d0504137c236b8cb306c430a737ffb8c7243672751905a0d92360cdd210d25113ce111ebdad987f5693bfc923c3422d7e6e608d7d5168273a4fe58c808ceb7db7a1c536adb205760205c57b65e79c879e1b624f0f5253977043b656d3ec27e19daf0e88cd83e5dbb357c1b328bf3f2ada7e156af10e2ba3504c25d1539e42d777f5a077478f1921c3d22952b19905018817645f0927a1d86849c7570208549f18cf07eeb4f173ae8368c107e497cbbf06897cd4be2945973f3f134dcda1aaa5ba46142d6e64373dc0113860387c1ebb5672d97d8073fa1ab02bf660555bdae25213c6d43872b4ef4a37efbe32ef58ef2f2250d43fa4ad83edd78e409a347f6e97afb35b6b7f8b3e093ceab6710c2ac88ecdce28e370b07dc247e0dcdbf38388775404c366b1e6c883bd84f73386daeb08364745e79ee1b68e7f6a3318cc211ae9e41081baa3ba5369b8da279d0ebfacc1f7e4fc3f0fa71e73518bae3eb504f84868670521ff261bb0c738173cfa521e5ed6122f6246cb8eaf67496ce6bf617c9eb25f132b24dbf15f5c86a1ba2437456841d08eff8ed4de726f13447b75fb2b501d367d8d6b03dade3246ca8ee54b48ffd2588d1adb3a4dad6d9e836bc5e123bf55b0959c36123d469d8a25f4ff3a139d980df083fe9d353708b407808e20e1eaf1cddab363aaca926bfa2e79f49eb5b1923d6e0dd86e1926b1822d718e47be1791fb2e37f2f978dac8af0e903f47f30c5705465f94f89d797e4f4153944eb0ec3098511e85eb135b9999e7f9eb5b8e3c74f3ff49a85e4e6db9455180c8760700326b40a6148aae15607f2d82a61ebce3eac4f83a1254da2af5f5276cae35be1b5417c0777cbdb72927af37d3de026277547066e9ec261686e0a416aac6c3de06f0d3f7a49e3c5f0028439b4af64a456ce0de5dbb01b1e19e0db35f33ae7c360a848397aac5b4320bc4577688e6eff093175fb97ca0f1f36fed0fc3fdb0f4ee0ff01daf61ab65ecf06d40000000049454e44ae426082	serve-12343@vm		0	1796622169.6517127	0	0		\N	dicom	default			
2	1.2.826.0.1.3680043.8.498.21879322338448223620013249581449987700	1	1.2.826.0.1.3680043.8.498.13469186819121368003653574637393177947	failed	conversion failed: the decoded image is blank (every pixel is 100): corrupt data, or no exposure	1796622171.3212593	1796622171.4136484	0	{"00080016": {"Value": ["1.2.840.10008.5.1.4.1.1.1"], "vr": "UI"}, "00080018": {"Value": ["1.2.826.0.1.3680043.8.498.13469186819121368003653574637393177947"], "vr": "UI"}, "00080060": {"Value": ["CR"], "vr": "CS"}, "00100010": {"Value": [{"Alphabetic": "Test^Synthetic"}], "vr": "PN"}, "00100020": {"Value": ["SYN001"], "vr": "LO"}, "00180015": {"Value": ["CHEST"], "vr": "CS"}, "00185101": {"Value": ["PA"], "vr": "CS"}, "0020000D": {"Value": ["1.2.826.0.1.3680043.8.498.21879322338448223620013249581449987700"], "vr": "UI"}, "0020000E": {"Value": ["1.2.826.0.1.3680043.8.498.20878753522513528607140818948534198211"], "vr": "UI"}, "00200013": {"Value": [1], "vr": "IS"}, "00280002": {"Value": [1], "vr": "US"}, "00280004": {"Value": ["MONOCHROME2"], "vr": "CS"}, "00280010": {"Value": [64], "vr": "US"}, "00280011": {"Value": [64], "vr": "US"}, "00280100": {"Value": [16], "vr": "US"}, "00280101": {"Value": [12], "vr": "US"}, "00280102": {"Value": [11], "vr": "US"}, "00280103": {"Value": [0], "vr": "US"}}		\N			0	\N			0	1796622171.3298821	0	0		\N	dicom	default			
3	1.2.826.0.1.3680043.8.498.59850479928336972502909399284307605012	1	1.2.826.0.1.3680043.8.498.88419022496101370905701883978474761934	prepared		1796622176.0068817	1796622176.0698402	0	{"00080016": {"Value": ["1.2.840.10008.5.1.4.1.1.1"], "vr": "UI"}, "00080018": {"Value": ["1.2.826.0.1.3680043.8.498.88419022496101370905701883978474761934"], "vr": "UI"}, "00080060": {"Value": ["CR"], "vr": "CS"}, "00100010": {"Value": [{"Alphabetic": "Test^Synthetic"}], "vr": "PN"}, "00100020": {"Value": ["SYN001"], "vr": "LO"}, "00180015": {"Value": ["CHEST"], "vr": "CS"}, "00185101": {"Value": ["PA"], "vr": "CS"}, "0020000D": {"Value": ["1.2.826.0.1.3680043.8.498.59850479928336972502909399284307605012"], "vr": "UI"}, "0020000E": {"Value": ["1.2.826.0.1.3680043.8.498.62947796406114015251816214433560959094"], "vr": "UI"}, "00200013": {"Value": [1], "vr": "IS"}, "00280002": {"Value": [1], "vr": "US"}, "00280004": {"Value": ["MONOCHROME2"], "vr": "CS"}, "00280010": {"Value": [64], "vr": "US"}, "00280011": {"Value": [64], "vr": "US"}, "00280100": {"Value": [16], "vr": "US"}, "00280101": {"Value": [12], "vr": "US"}, "00280102": {"Value": [11], "vr": "US"}, "00280103": {"Value": [0], "vr": "US"}}	mimic-v1	\N			0	\\x89504e470d0a1a0a0000000d494844520000008c0000008c080200000021a2d66900001b56494441547801ed9dd1921b47ae44af37fcffbfec9be4210f93a8ea6ece6824efc376844b898304aa0aad1ec98e8dd8bffe6ff7fcf5d75f0337691d1b61afd6365447a0bb56488ab0f56ad63304ce0109fff39fff44c480d033c2f0410c87e810dd2b7d9a44af61c355df4e9b7ffef7fc374c80df3ddb93bc7d315b5fc3d66947d8ab7b341c3a21a43b084911b65ecd7a86c03920bf7f074c38b861047d20cd69b2f295d0bf79f41a02e52da2738cbff3cf9f7972e26cc4da3b72e723a25f1be264659713c387a90ffb38d3b56d5264491902097b8d6d4de5188f9794748f09ddb035a71feb2889ff9f7ffec1436daf9a0379ba5b93689b0c8d6d5ddbcf9df510c630780c4e473362700be58af6d33029b22304de936f0bb636279dd3fe962f29dbf4a40843fa09e401aa2356f2b02e6de52d52dee1aa2f0d6bc99630e035151ec8aae85043848f7d24889cf63b2f29ed9c2362bbbaab7e6da46c320c6b16824d7d24d2f628055f0d19c779c9c832be01130ebe0d8588acf691b4c869ff8e8361f5da70d54dac029a8ae0d91a4c3d5d8f2f2fe6410cd79291324c93be397c25cdd7ac04b186e73ccd63e071a327b8fd3a0c83b433d7f9e697c49f37be80213856d6c109c9462b5a5b4576ac3a07eff0134ffb3fd7cceec8cfa09375e23a257430d48030db22d7797b49b106f97488962862ee943a02bd1a4c0d81df95ec58e936e049c8383410a6895c81c7708884bd75c23c29c9dadc8d5adcbdaf9f6963239ad0adabd4e9fff69212fffa43f7b54f7820eb1042aae8b05d29dca63e87df6eb21d37fb9a6a911461d6d67a1ab6b62a22a77dbca43818106b87e85e75365447a063436c576184da1204a95e4f78526459a9bab3076797ce4a06ec1dd50cda5001776d5bb44ffcad299744b4018e2767fbf92fe936925f7b3cdce76db82485bd0e3ec2382588116a0827c57ac4efaec74f36b42b251a229aaca1244378fbdb5dca7a2e84bd9a6d38744248cc88ed2a8c505302d9ae97866dd5256422abcd496d0d81cd87be275f4b9a13200c75348936cc957ff24ba2759af6b3428922fe6856e0d1fa89e7a8f61b3c13fcc68ece5d91ada33d006dcd22f00c1bceb33f9352e6f8225a774a1d81d60901ba02f11c413ceb6a15a9be92249e2d8f01de0688fe5550b5f2101ef74d38cca48047a9e16933a99cf63b5f528a53c963a386236518a1ad054d20eaada0c33625bcf45c1a68d5efc0e66bca7793142592118e5ab30a3a749fa472dab73f9312f3c417c1fa64b75f9b44fb980ac9bfe7ca233ad5dad46a6e32341d0273fa4e8db053e836a4892182b59b87005da9325c05a70aef14a13b12ae06381dba4f786adfbea4a483b6cf4825e459cdcfcca3d56a93e854a49b7a2b2e0da38a710c7812f6f8569ba324b50d8588acf691003bdcda28cc95df5e12134f0e71b45abc359855745b9b931d6b9c838cf0d230fc5f0a99da51c93a479c706a5d93d27f62c0ef8e5d4e87905cf9ed2f0e493085ac3e0dd58ad8864e28511cd9eeded782ed155f29eedf2e6e15426a180cb72270cbe946ca55d1bba33bd57aeb5c0d92883c99c9e64b0a3d79d8696be854349e864de0638d61906f843fd2e4f37d33c798eff37c2ca3163a3c54b513b2f25ce7f11787b8b95b569f866afae21126844b5aa8dba6bfc5a5a1cd473a4dd6ab1e99e1f16f4b80f7e4eb4dd80ade1e9ddd56a85f326c0993624544e73a5ffe9252f3e71f2ec3e9b33b4278196af0e6432484b00eff3d3967071c29433a9c78928a67d8088588dcf7ed4b72fa49338b754d8aec494a0f02bfab7015f45cb94443843a5942c9082ddf8a9e6c1b0677acf1907295586e4aa127646b6ba88ec85dbef02551e9fd1142da053611b619c376b57c9bbd847dff0fcd0eb1b716da10929e9036343932b4078db3fbe400867d98e8b77f994d65501ec4581342da202445d81a73133dabd04ccafbe80cc1335284ac6dd0d6867493dbf968c76158c3d13986b579484e95354f6fd46474c6993585175f12955c3b6b3fa6844da2e14042f59148c9514a7ee9b934d0ca29d8593166673884e1280c0f21bb7a48b95a6b4993e85ce7ed2581fa7f2f4701d7663df9af3e6da61564f086433b5fee6976842b5f0d10f9100921ac69d8e12df71c3429c31637d3fde9f2268f7479228f1a36ef86af97149a8027dae7c95ebf8e1461d2115d0ed14cb6c3ad5eabb6b64bc82c8e6ccc6ecd0ebe0de94ceac8b0f500b3a9b51e60f4193c3379fb927aca58d7ff5510dc6952d285addd2fc29286ad2f0d6dfe8676766bed18d33604da0491564d568f369c183cc008b73c63997f05d7d7b3667c3d44f549ca56084b06378ca1af143e42087d486d0d5da82102ddabce7bf2f18308d836b2aec3a053c320f15b828750784b3f2fdbb5c0dcf7ed4bba9b6f4b12eb4316ae473808bcd71476b8ea4b03251fdad6feff2261f4df3b40eefbf625d925893c097b250b31d5d01470ace7d9d170d476489f2f5d7bfcfeed6ed19dedb68313ae068859046dd9a8499bc7310cf118e6bef34b0afac5c7ee43a4ed2027e138e808d7420d8835dcf2f409e751d3fc895f7f196ba279d4b627ba6dea16e8ac8a6e08ccdc5e5fd2ddf9fa1b5acf14bd9294744a1df1a5c7ad11b44d8711ae44c3896058abc121926a1b93624dd6d02692d513b2da68026f433bf1acd9dcfaed4bfad26457b35b6e458f58c37a265227bcfb681ba24374936c9110e2aa307b73ecbe8661181ec2e121141a2aba4960f3dcf727bf24ba1fad3ddc23cf11f7e631d0a7c9b6ca6bafd9a4c892320412bac6d3864b4ff7b4b021bad761eb54f4db4b4ad00fd6234271b2da1027abe613cf27a99feaf3c95ef1f0563e34ff0e5beefbfa9212f0f44e210959e16ac5307479ebf68f9b13c63078ca21975c837e05676843f43604de936f4b1f63ebc1d02909701b06ca11ae8a94672cf3cfa4a47992cba38e58c9c3fafe168543d86d70c34b83ce73918be5593d40536b2889f0b14f1335229e08d6413a652b8566c92a3296b7978463bc0c4227d8593b9a95ace2d2b31ab8f9daea881cdd79f06d2844647517c9ead9da46a1a1c23e921391b1bcfdb8c3dac342af64346dc34819c6d35782afa4f99a9520d6f09ca7790c3c6ef404b75f8761109cedc1704edc48611f0ae56b1892b9bdbe24ac8e3ba2356e0966d723ae81f20e7f50f79dd7b63dc7640dd594dba40d746b0359cdbd9d85111988617bdc74c09330ad5e5f123ec7ad084737194d4f52c349382e40982672c5f0cb11597beb84795292b5f9d1193077b64974876d6b8d67ebbcd53f7f6c4678c13b7efc386d43da1ab20555af979416799253a89b503c560a07fc6af8ed267de7b1a9a916f110666dada7616b0d1f8ad48ec7c2c14fc28ce5ed2561ed61a15d3bd57d4f78526459dde28e5f7f7bec6c3c6407ec1dd5b9b6ba05dcb56dd13e29694d0749441be0eea20d8f4e439d88513eb284ebc5435e7f26993e12a3cb91ad39975c4f33f808e3972046a8219c14eb11bfbb5e3f5e088586a37c3548701e15da6788519e6c1b46183324f3fcc29744cd764da32dff45e841471f78dfb90d83771352bda6503fcece0ee22eed69a86e6193869febdb4bf2373e658e1b1e2839e9fb89e7a4fcaba95cfb1b3bf664d1d997097200da0e1b9eb66d091d7ec79a9bbebe2436f0f28af0d6db730cc3b8524abcff28c7c99a261636a79c420d40c316d1231c665a018f52c3d3e64e6d37c240ea7694e71f6c361982e9b5adb748f6f59212e4495aa1156eb88a4b036dd7c2269f3489ff7eebc3bf2c70556cbd5a85e8903334694ff4e84308ef147d7ab567c3559f5f3cd9b79744fd5ab392b193068f8e6184a32a611bd2c410c1dacd4380ae5419ae825dc23b45e88e84ab01ee393b6cb3068eda29b4861186e7e92a48569dc91efe99a4db2e4d86669b014f424f70e2e914feac884e450fbe0d8588ac3691003bdcda46a12182f2e8ae1d9e2f85b7979402469c15b1b638e23a2f0d3abf21bcf6b6b667d14e38c4351de00a5308b89a1df510ea3154581821fc4591d9bebda4a3765f7d07eb114368426a180cb72270cb735a53184638aea38742d76183b71943937523b38aaea2a72ba961380a6f2f29fff074e5d0310cf28df0479a7cbeafc362a0845d0e0fd12019363c0dffa4cedc5e5fd2c9c63f32df34592775b26952dba9c13b3b6c84eca52664bb013bdcdad61de933d6ae1da95f096f2f29ff7cfb71ef9c2f4d128e839e87fab50d9110c23afcf7e4e3efc76d8043d45bc3ead9da7adf36c811761b3ca184291922ce4797eccf7c49ee1da1ce090825238ce1e4c99db9f6f00cde1e52ae295ccd664d49dc4812d150dd024f3b3babe6ee868a319ce6a4b2fecc4bb2f5565c5ea0abbc73441eef100f84951275c4303421b51ada835e3d3940523c7d9876a24736707dd26785e7246dbff392d69d4238e24811b2b6415b1b7256f938f7111fb60e47e76df37872aaac79a845dcc17e9ac3d93b8e0e2365e795f764ccba51b2df7949366ac14e4d86be34e03fba4cb24991d54978c7f34beadd31b4d99261639786106a3fe4c376199e4fe6cb2f699c75849e46ae1829f9100921aca9eaf0967bfe582365d8e266ba3f5ddee4912e4fe451c3e636145238b861e6bb1a92d580ee55bff0cb2fc9caef89f504dd27d9ad61f06d4821a923c3d603cc31acf548a38f5c7393ad3eff44b6252bfce825fdc84eebde126727518c316d43a04d10e9d064f568c389e168df4bae61881f19dda72fa9af94738c10c281486d0d5da82102ddabce7bf2f18308d836b2aec3a053c320f15b828750784b3f2fdbb52bd7d6a26de8350be9d1e9547cfa922c3811ec7462f82f4c31fa7ffd60e7a3fbf997f4a56b8fdfbf63589dedb68313ae06885944b6d0d90428192721b4f0f3ec79897d7ee025d92b62ec3ac276a23520d670cbd92829b3882dbfbb1ece36746d7b06b7a4053aab820e860abadd7cefcfca0719e17bf55b74fb92f2cfd18337598b708ef0c4a0731547a7849b55a443b44f8736378b684fc86ac3006f433bf16cb3da229ce1808627a3b3f648ecff65f6e84c273c1b78206d4374886e92f284105785d99ba3feb5463d0cf29bfbfe70bc6774fb95120b0d157a10f216d1fde86c183d78873dba519530d9fd4b5aad5bb2eed4e4a4646b0b6c6e0824744df3365c7a388ce5f81baea7b5ff9a5a49375cb3e7e4f7bea4defb7ca776fe88fe95a1fcc8017eaac9e5dce697346e4e18d3e0391fe4926bd0afe0926d88de86c07bf26de9636c3d183a25016ec34039c27508e66bff647d80ebe8dc57274d0c5711c3f58fbbcb2e6bdf2dc9f9d623c60934b58692081fb768a24674f3413a652b8566c91031845c4ee6d2f06193efbc248e38ce7d121edd79f06d2844647523c9ead9da46a1a1c23e92739177d01bade61f7e4963b311ba3d7ccd4a86c150412b434460048f8627b8fd3a0c83e06c0f8673e2460afb50285f4352cd4f08298fa41371f92263b8fe9246d3cfc3bef35ae5a11186714a227884dde7997cf324684f172675f27b7f2d1c7d7e5378f29292e2f99ba373827150c2f8e48ae19723b2a6ca5b25cc93306b730d2deedec341d3846e5db56a77dca6ec10e105a3f3e01fc2d06e836c433b5bb58a938190ca7afd259d7459b76c92738fa39b35d5225942aad47a2e0d3acf85c750e897fc88f864745b4fa03ce2f19f8538d33df596d6ba359cdc24d7de66e1ae6d8bf6496d6b5a4922da00773b6d78741aea448cf291251c93e1003d9c6120dcb61ab09b9802daf3fac79d95111c4e31c2e6a4862121c41541e12df77c9a8cb658da201970141a0e31ca936dc30863263b860bc7dce50efa1b826e29bcfe71e7c68a71a0c1fbcea62206ef26a47a6d3fcece0ee22eed69a86e6193861feaf1864eaa2e9d5b43c3e8efbca4a333e5daddfdc836784f161d0313c449db61c3d3b62da1c3bfb85e0e64350c92f0f192d6db72e7ac3199458c5027b348766b181c4f43caedb64d0d4f9b3b4573b26e84c1506193211856dbe8609f9e8c29fc863431dc8ae159c3eb2f69d46cb709cce1c6f974760a8fab2944879437694f349bf6d69a3b459f5edbd67ce8cb8b5f1ad2f04b9e98db4f98f5ed2f0e9e921110c6648860b55d429ef82358a9325c05b62e44677547499b07347524c2396a0af5a0095d5b447755421e0b9fe082d3649847a847818130ebdb97747482d1d4b0af2d54248b01b20d8588d5bf1a24dd762df4186d8b6ee7f0fc8e70cc7dddc237d1ce68c388b797b4b638216358c3d9b368271ce29a5ab8c21402ae662f3d847a0c15164608ff8c70d6eb76b7f7f07c3a1b46f84c3e5f12a71f7730dc8ac02dcf06a6308cb00f8479bb0e1b1e1b9a6db26e64564121213d5dedb912fd7a4232c4956b4038f1c113925a0d120ddfff92d65d3f21dc2aabcfa882076a90b433104fc33fac9de6c9be5b4fa05c9126777cfb8c14e8efbca4edd4d2cec10d9114590b1186c3d0e53af1ac7d241a86a0db803f12f67c8f1a6e3d0db77ac0c7dfeec64d1c137b9b952bda201c229e109f351c24ce2d19905018817645d86df084128782190e94dced8fdf88e8acf17cfe50a5dff0b2cfe34ba292b2f335871ee7c63f787b48b9c6bf9acd9a92781e494443750b3cedecacfae8e2e178868190ac1ebbada23dd4c663b9c2bd86c0fce98f3bef1c91a7f786b0b2873a22a40d4d48ad86f6a0574f0e60db3e4c3bd1231bb83eeeb2a64ec8279d57cf20845911d9aec51d1ffcedce3171c4a33b1cf1938b8dce71ae4d4272b8ac79fa004dc616c339b2eea24d0364cb19d64875e834edb68ad533086143b5a92f7f49eb3972ee3ebae110867680640d5113ea21e53af86ac6b9e55dfb89765847e64b430adb13bd860d570d79fb8b83771b222184357b7778cb3d074dcab0c5cd747fbabcc9235d9ec8a386cd6d28a47070c3dc7c3524ab01ddabfe86e9d3e156b7a775cc840dd59d8abefe9272beed1107df8614923a326c3dc0dcc45a4730fac83537d96a67b1cd7e0e3fe9e3b8db1c6d88b883b7bfaa40580f5f92b35b0f3dc6b40d813641a45593d5a30d27060f30c24bae6108e632e037c2f33e648ffe4f7bb31d2f80b5775fff1f490f7fdc31af5ed3c850015cc3109e6108943c2d6f24d9612014ded27512346d07376c117d196260ca76bed7bd2d18de5005ebf4495a85304cd6924e451f7e49b5dd9f962773f99347e9f16df73d32849362b5f68e37ffd527065263a53070f392f80d1ec776589d6dc3e084ab016216d17b356933275e573c2b876cb35bb876c87456d8e4c820575065a808478f7518363fee7207aec19a462d6eb9fa91c5f6c0e64de8d0448d700bb9252db4294679f3e8f5897fc0414638cc23ec51920af109895eb986cfc5fc928e4e0937abc821a27d3ae47c4db00db2da30c053a24101b49b7c150ea253ce2e1083d9f6ab3f147473dd8a15a6b9908d08733b53f34bf2feb1e6315400d73044d85a3f70780887e768dfe69644a08720747523c9d6df366634fc1d0e03231622845f12d9a5fdaf2f29e7eb237a9ac10d3113baa6aa0d971e76b11c7f438fa1b0bfe44474c313db36c594b729e06a3822cdd588b19acd16d13caf9774729acf53bf3294cf77f903ce4ce77297e15943462c274c5bf92adcb453af1f77fd3bd45903b721508322db748ad0ec36d51e4ea9df506107aae48a5ccf146652c218b65c5b044d9a6c75db5adba1a11ad1ebf877dea478e8f37a49e3103d8ba4d65012e16393266a44771ba453b65268960c114348ae37f8082f0d9f34a127ad1ca8d02d5603e6b1f609472ae1e6c7dd98c5361422b2ba8d64f56c6da3d050611fc9b9c8ad7aa3d51cc30a07f9c49392ed1740ab74f0e9e6eb7ff5894d83252ddebe24eed643417b67433d926c834db27a30e0d4c6f9d6f092bb630bab10ae6e2d3972c27b70a344c3ea69821ea461ebee19dea9e8f92579198461ba48227884ecc1fa4cbe7912b4a70b93ca395683dd46e19f0919d376afa47cda104848561da1bf451b8e3cf85f5f5262cab62b231fa99eecd630fc0929e9423ddd213ae7d1ac7f08c36ea2763b097e3bcb5771320d52ab41a248db36abb786409eb5eaed4bca1db8468bd41076aac9a5a1bb75130b1159c763e1e0bf186616971db61e8798f236c8151808d795dd577e445e2fc98928e8452834249b55123142c8e88347a7213657da1a6e85b722cb76819a8781d0ec89e826da806b13cd8a94686e7d04071fe1ebc79d4351a43bdab509ba496c23840c380a0d8760d3c0c121acdd1f1bd7d3a361f863fbf663f388ef35f96ae1eb258d6b24644cbd0a11867a9a44f3988d78b25b73750bf851b69dabcec856b82597cead618510b9229b764a3d0c09216335bca5d7bfdd79a58c693c4985b421f55b4fdba81ac426ff96c8c9cfb75e0d8324f4a1554285a921dc74f0f3f0ed4b62e269a4b029f028a5cd9781301c85f6d7a05fe18e43e43e12cb43784262d8f2a7e5f62b4d9aac7a78b6614335e26865f7648f0ca458311ffec5c16145f0a42082cb3479a49fbf681b1e0b35405cf54bb682bb6d53c04b436c5ff2382ffb4be8634867c2751de5abe188bcbe2467f49cf6ed7da823d2226bc3d63a81a68e44781a0e33fd1b461ba2bb0a320cc2134e9376ae5a8f020fe1ba26dbb0fff38fcd63e86794ac29c8eb25d1c859afefe3dc40a1a7b1cf2086dd2d9aed46f6f785b9fc79730ccc486787e823124e9522e128e9f05ccf1f770e97a9393bc3d500f1261a063154581821fc33a2673776ec7975ca120dc902252da8c580b3b35fd2f34bf2580c6e5d3528b6b31e851da6d0504137c236b8cb306c430a737ffb8c7243672751905a0d92360cdd210d25113ce111ebdad987f5693bfc923c3422d7e6e608d7d5168273a4fe58c808ceb7db7a1c536adb205760205c57b65e79c879e1b624f0f5253977043b656d3ec27e19daf0e88cd83e5dbb357c1b328bf3f2ada7e156af10e2ba3504c25d1539e42d777f5a077478f1921c3d22952b19905018817645f0927a1d86849c7570208549f18cf07eeb4f173ae8368c107e497cbbf06897cd4be2945973f3f134dcda1aaa5ba46142d6e64373dc0113860387c1ebb5672d97d8073fa1ab02bf660555bdae25213c6d43872b4ef4a37efbe32ef58ef2f2250d43fa4ad83edd78e409a347f6e97afb35b6b7f8b3e093ceab6710c2ac88ecdce28e370b07dc247e0dcdbf38388775404c366b1e6c883bd84f73386daeb08364745e79ee1b68e7f6a3318cc211ae9e41081baa3ba5369b8da279d0ebfacc1f7e4fc3f0fa71e73518bae3eb504f84868670521ff261bb0c738173cfa521e5ed6122f6246cb8eaf67496ce6bf617c9eb25f132b24dbf15f5c86a1ba2437456841d08eff8ed4de726f13447b75fb2b501d367d8d6b03dade3246ca8ee54b48ffd2588d1adb3a4dad6d9e836bc5e123bf55b0959c36123d469d8a25f4ff3a139d980df083fe9d353708b407808e20e1eaf1cddab363aaca926bfa2e79f49eb5b1923d6e0dd86e1926b1822d718e47be1791fb2e37f2f978dac8af0e903f47f30c5705465f94f89d797e4f4153944eb0ec3098511e85eb135b9999e7f9eb5b8e3c74f3ff49a85e4e6db9455180c8760700326b40a6148aae15607f2d82a61ebce3eac4f83a1254da2af5f5276cae35be1b5417c0777cbdb72927af37d3de026277547066e9ec261686e0a416aac6c3de06f0d3f7a49e3c5f0028439b4af64a456ce0de5dbb01b1e19e0db35f33ae7c360a848397aac5b4320bc4577688e6eff093175fb97ca0f1f36fed0fc3fdb0f4ee0ff01daf61ab65ecf06d40000000049454e44ae426082			0	1796622176.075403	0	0		\N	dicom	default			
\.


--
-- Data for Name: questions; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.questions (id, job_id, text, asked_by, asked_at, state, route, holder, held_since, answered_at, job_version, reply_text, reasoning, answer, status, generated_tokens, reused_turn, worker, error, addendum, addendum_sop_instance_uid, addendum_path, addendum_detail) FROM stdin;
\.


--
-- Data for Name: review_labels; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.review_labels (id, review_id, label, verdict, model_present, reviewer_present) FROM stdin;
\.


--
-- Data for Name: reviews; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.reviews (id, job_id, study_instance_uid, reviewer, created_at, note, current) FROM stdin;
\.


--
-- Data for Name: studies; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.studies (id, study_instance_uid, first_received_at, last_received_at, assembled_at, outcome, rule) FROM stdin;
1	1.2.826.0.1.3680043.8.498.68106502798340701598093618801354702832	1796622168.4242065	1796622168.4242065	1796622169.5640955	admitted 1.2.826.0.1.3680043.8.498.90570152656524160535596906114072430309	default
2	1.2.826.0.1.3680043.8.498.21879322338448223620013249581449987700	1796622170.2148767	1796622170.2148767	1796622171.3212593	admitted 1.2.826.0.1.3680043.8.498.13469186819121368003653574637393177947	default
3	1.2.826.0.1.3680043.8.498.59850479928336972502909399284307605012	1796622174.856014	1796622174.856014	1796622176.0068817	admitted 1.2.826.0.1.3680043.8.498.88419022496101370905701883978474761934	default
\.


--
-- Data for Name: workers; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.workers (name, kind, host, pid, queues, started_at, last_beat, stopped_at) FROM stdin;
serve-12343@vm	serve	vm	12343	cpu,gpu	1796622167.9619167	1796622167.9619167	1796622171.6483128
serve-12420@vm	serve	vm	12420	cpu	1796622174.435839	1796622174.435839	\N
\.


--
-- Name: api_tokens_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.api_tokens_id_seq', 1, false);


--
-- Name: associations_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.associations_id_seq', 3, true);


--
-- Name: batch_files_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.batch_files_id_seq', 1, false);


--
-- Name: batch_items_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.batch_items_id_seq', 1, false);


--
-- Name: batch_runs_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.batch_runs_id_seq', 1, false);


--
-- Name: conversation_turns_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.conversation_turns_id_seq', 2, true);


--
-- Name: deliveries_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.deliveries_id_seq', 1, false);


--
-- Name: installation_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.installation_id_seq', 1, false);


--
-- Name: instances_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.instances_id_seq', 3, true);


--
-- Name: job_events_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.job_events_id_seq', 16, true);


--
-- Name: jobs_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.jobs_id_seq', 3, true);


--
-- Name: questions_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.questions_id_seq', 1, false);


--
-- Name: review_labels_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.review_labels_id_seq', 1, false);


--
-- Name: reviews_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.reviews_id_seq', 1, false);


--
-- Name: studies_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.studies_id_seq', 3, true);


--
-- Name: alembic_version alembic_version_pkc; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.alembic_version
    ADD CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num);


--
-- Name: api_tokens api_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_pkey PRIMARY KEY (id);


--
-- Name: api_tokens api_tokens_token_sha256_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_token_sha256_key UNIQUE (token_sha256);


--
-- Name: associations associations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.associations
    ADD CONSTRAINT associations_pkey PRIMARY KEY (id);


--
-- Name: batch_files batch_files_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_files
    ADD CONSTRAINT batch_files_pkey PRIMARY KEY (id);


--
-- Name: batch_items batch_items_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_items
    ADD CONSTRAINT batch_items_pkey PRIMARY KEY (id);


--
-- Name: batch_items batch_items_run_id_study_key_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_items
    ADD CONSTRAINT batch_items_run_id_study_key_key UNIQUE (run_id, study_key);


--
-- Name: batch_runs batch_runs_name_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_runs
    ADD CONSTRAINT batch_runs_name_key UNIQUE (name);


--
-- Name: batch_runs batch_runs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_runs
    ADD CONSTRAINT batch_runs_pkey PRIMARY KEY (id);


--
-- Name: conversation_turns conversation_turns_job_id_job_version_seq_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.conversation_turns
    ADD CONSTRAINT conversation_turns_job_id_job_version_seq_key UNIQUE (job_id, job_version, seq);


--
-- Name: conversation_turns conversation_turns_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.conversation_turns
    ADD CONSTRAINT conversation_turns_pkey PRIMARY KEY (id);


--
-- Name: deliveries deliveries_job_id_destination_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_job_id_destination_key UNIQUE (job_id, destination);


--
-- Name: deliveries deliveries_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id);


--
-- Name: installation installation_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.installation
    ADD CONSTRAINT installation_pkey PRIMARY KEY (id);


--
-- Name: instances instances_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.instances
    ADD CONSTRAINT instances_pkey PRIMARY KEY (id);


--
-- Name: instances instances_sop_instance_uid_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.instances
    ADD CONSTRAINT instances_sop_instance_uid_key UNIQUE (sop_instance_uid);


--
-- Name: job_events job_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_events
    ADD CONSTRAINT job_events_pkey PRIMARY KEY (id);


--
-- Name: jobs jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);


--
-- Name: jobs jobs_study_instance_uid_version_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_study_instance_uid_version_key UNIQUE (study_instance_uid, version);


--
-- Name: questions questions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.questions
    ADD CONSTRAINT questions_pkey PRIMARY KEY (id);


--
-- Name: review_labels review_labels_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.review_labels
    ADD CONSTRAINT review_labels_pkey PRIMARY KEY (id);


--
-- Name: review_labels review_labels_review_id_label_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.review_labels
    ADD CONSTRAINT review_labels_review_id_label_key UNIQUE (review_id, label);


--
-- Name: reviews reviews_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.reviews
    ADD CONSTRAINT reviews_pkey PRIMARY KEY (id);


--
-- Name: studies studies_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.studies
    ADD CONSTRAINT studies_pkey PRIMARY KEY (id);


--
-- Name: studies studies_study_instance_uid_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.studies
    ADD CONSTRAINT studies_study_instance_uid_key UNIQUE (study_instance_uid);


--
-- Name: workers workers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (name);


--
-- Name: ix_api_tokens_name; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_api_tokens_name ON public.api_tokens USING btree (name);


--
-- Name: ix_associations_started_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_associations_started_at ON public.associations USING btree (started_at);


--
-- Name: ix_batch_files_item; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_batch_files_item ON public.batch_files USING btree (item_id);


--
-- Name: ix_batch_items_run_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_batch_items_run_state ON public.batch_items USING btree (run_id, state);


--
-- Name: ix_batch_items_study; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_batch_items_study ON public.batch_items USING btree (study_instance_uid);


--
-- Name: ix_conversation_turns_job_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_conversation_turns_job_id ON public.conversation_turns USING btree (job_id);


--
-- Name: ix_deliveries_job_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_deliveries_job_id ON public.deliveries USING btree (job_id);


--
-- Name: ix_instances_study_instance_uid; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_instances_study_instance_uid ON public.instances USING btree (study_instance_uid);


--
-- Name: ix_job_events_job_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_job_events_job_id ON public.job_events USING btree (job_id);


--
-- Name: ix_jobs_holder; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_jobs_holder ON public.jobs USING btree (holder);


--
-- Name: ix_jobs_priority; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_jobs_priority ON public.jobs USING btree (priority);


--
-- Name: ix_jobs_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_jobs_state ON public.jobs USING btree (state);


--
-- Name: ix_jobs_study_instance_uid; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_jobs_study_instance_uid ON public.jobs USING btree (study_instance_uid);


--
-- Name: ix_questions_job_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_questions_job_id ON public.questions USING btree (job_id);


--
-- Name: ix_questions_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_questions_state ON public.questions USING btree (state);


--
-- Name: ix_review_labels_review_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_review_labels_review_id ON public.review_labels USING btree (review_id);


--
-- Name: ix_reviews_current; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_reviews_current ON public.reviews USING btree (current);


--
-- Name: ix_reviews_job_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_reviews_job_id ON public.reviews USING btree (job_id);


--
-- Name: ix_reviews_study_instance_uid; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_reviews_study_instance_uid ON public.reviews USING btree (study_instance_uid);


--
-- Name: ix_studies_last_received_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_studies_last_received_at ON public.studies USING btree (last_received_at);


--
-- Name: batch_files batch_files_item_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_files
    ADD CONSTRAINT batch_files_item_id_fkey FOREIGN KEY (item_id) REFERENCES public.batch_items(id);


--
-- Name: batch_items batch_items_run_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_items
    ADD CONSTRAINT batch_items_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.batch_runs(id);


--
-- Name: conversation_turns conversation_turns_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.conversation_turns
    ADD CONSTRAINT conversation_turns_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.jobs(id);


--
-- Name: deliveries deliveries_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.jobs(id);


--
-- Name: job_events job_events_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.job_events
    ADD CONSTRAINT job_events_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.jobs(id);


--
-- Name: questions questions_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.questions
    ADD CONSTRAINT questions_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.jobs(id);


--
-- Name: review_labels review_labels_review_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.review_labels
    ADD CONSTRAINT review_labels_review_id_fkey FOREIGN KEY (review_id) REFERENCES public.reviews(id);


--
-- Name: reviews reviews_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.reviews
    ADD CONSTRAINT reviews_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.jobs(id);


--
-- PostgreSQL database dump complete
--


