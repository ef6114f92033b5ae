-- AsterDrive-shaped schema for PostgreSQL (tables of docs/asterdrive.md),
-- deterministic data, and a deterministic writer.
--
--   psql -v scale=N -f asterdrive_pg.sql      (scale 1 ~ 10 MB of tables)
--
-- Everything is a function of `scale` and of the writer step number k:
-- the state after writer steps 1..K is always the same, whatever the
-- timing. Tests use that to know exactly what a consistent snapshot must
-- contain (see test_postgres_snapshot.sh): a set whose writer_state says K
-- must equal a fresh database loaded with the same scale plus steps 1..K.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE seaql_migrations (
    version     text PRIMARY KEY,
    applied_at  bigint NOT NULL
);
CREATE TABLE storage_policies (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL,
    connector_id    text NOT NULL,
    storage_config  jsonb NOT NULL,
    content_dedup   boolean NOT NULL DEFAULT false,
    is_default      boolean NOT NULL DEFAULT false,
    max_file_size   bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL UNIQUE,
    email           text NOT NULL UNIQUE,
    password_hash   text NOT NULL,
    role            text NOT NULL DEFAULT 'user',
    status          text NOT NULL DEFAULT 'active',
    storage_used    bigint NOT NULL DEFAULT 0,
    storage_quota   bigint NOT NULL DEFAULT 0,
    policy_id       bigint REFERENCES storage_policies(id),
    totp_secret_enc text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE TABLE user_profiles (
    user_id         bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    display_name    text,
    avatar_source   text NOT NULL DEFAULT 'none' CHECK (avatar_source IN ('none', 'gravatar', 'upload')),
    avatar_key      text,
    avatar_version  integer NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL
);
CREATE TABLE folders (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL,
    parent_id       bigint REFERENCES folders(id),
    owner_user_id   bigint REFERENCES users(id),
    team_id         bigint,
    policy_id       bigint REFERENCES storage_policies(id),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX idx_folders_parent ON folders(parent_id);
CREATE TABLE file_blobs (
    id                  bigserial PRIMARY KEY,
    hash                text NOT NULL,
    size                bigint NOT NULL,
    policy_id           bigint NOT NULL REFERENCES storage_policies(id),
    storage_path        text NOT NULL,
    backing             text NOT NULL DEFAULT 'stored' CHECK (backing IN ('stored', 'virtual_empty')),
    thumbnail_path      text,
    thumbnail_processor text,
    ref_count           bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX idx_file_blobs_hash ON file_blobs(hash);
CREATE TABLE files (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL,
    folder_id       bigint REFERENCES folders(id),
    blob_id         bigint NOT NULL REFERENCES file_blobs(id),
    size            bigint NOT NULL,
    owner_user_id   bigint REFERENCES users(id),
    team_id         bigint,
    mime_type       text NOT NULL,
    is_locked       boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX idx_files_folder ON files(folder_id);
CREATE INDEX idx_files_blob ON files(blob_id);
CREATE TABLE file_revision_histories (
    id                  bigserial PRIMARY KEY,
    file_id             bigint NOT NULL UNIQUE REFERENCES files(id) ON DELETE CASCADE,
    current_revision_id bigint,
    created_at          timestamptz NOT NULL
);
CREATE TABLE file_revisions (
    id              bigserial PRIMARY KEY,
    history_id      bigint NOT NULL REFERENCES file_revision_histories(id) ON DELETE CASCADE,
    file_id         bigint NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    version         integer NOT NULL,
    blob_id         bigint REFERENCES file_blobs(id),
    logical_size    bigint NOT NULL,
    is_current      boolean NOT NULL DEFAULT false,
    retired_at      timestamptz,
    created_at      timestamptz NOT NULL
);
CREATE INDEX idx_file_revisions_blob ON file_revisions(blob_id);
CREATE TABLE shares (
    id              bigserial PRIMARY KEY,
    token           text NOT NULL UNIQUE,
    user_id         bigint NOT NULL REFERENCES users(id),
    file_id         bigint REFERENCES files(id) ON DELETE CASCADE,
    folder_id       bigint REFERENCES folders(id) ON DELETE CASCADE,
    password_hash   text,
    expires_at      timestamptz,
    max_downloads   integer NOT NULL DEFAULT 0,
    download_count  integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    CHECK ((file_id IS NULL) <> (folder_id IS NULL))
);
CREATE TABLE upload_sessions (
    id              text PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users(id),
    policy_id       bigint NOT NULL REFERENCES storage_policies(id),
    folder_id       bigint REFERENCES folders(id),
    filename        text NOT NULL,
    total_size      bigint NOT NULL,
    chunk_size      bigint NOT NULL,
    total_chunks    integer NOT NULL,
    received_count  integer NOT NULL DEFAULT 0,
    object_temp_key text,
    status          text NOT NULL DEFAULT 'uploading',
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE TABLE system_config (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    value_type  text NOT NULL DEFAULT 'string',
    updated_at  timestamptz NOT NULL
);
-- The test writer's position: the last step committed.
CREATE TABLE writer_state (
    id      integer PRIMARY KEY CHECK (id = 1),
    k       bigint NOT NULL,
    scale   integer NOT NULL,
    stop    boolean NOT NULL DEFAULT false
);

-- ---- deterministic data ------------------------------------------------------
INSERT INTO writer_state VALUES (1, 0, :scale, false);
INSERT INTO seaql_migrations
SELECT v, 1704067200 + n FROM unnest(ARRAY[
    'm20250101_000001_create_users', 'm20250101_000002_create_storage_policies',
    'm20250101_000003_create_folders', 'm20250101_000004_create_file_blobs',
    'm20250101_000005_create_files', 'm20250102_000001_create_shares',
    'm20250110_000001_create_upload_sessions', 'm20250115_000001_create_system_config',
    'm20250201_000001_add_user_profiles', 'm20250215_000001_add_file_revisions']) WITH ORDINALITY AS m(v, n);
INSERT INTO storage_policies (id, name, connector_id, storage_config, content_dedup, is_default, created_at, updated_at) VALUES
    (1, 'Local', 'local', '{"base_path": "data/uploads"}', false, true, '2024-01-01Z', '2024-01-01Z'),
    (2, 'Dedup', 'local', '{"base_path": "data/dedup"}', true, false, '2024-01-01Z', '2024-01-01Z');
INSERT INTO system_config VALUES
    ('avatar_dir', 'data/avatar', 'string', '2024-01-01Z'),
    ('site_name', 'AsterDrive test', 'string', '2024-01-01Z');
INSERT INTO users (id, username, email, password_hash, storage_quota, policy_id, created_at, updated_at)
SELECT i, 'user' || i, 'user' || i || '@example.test', '$argon2id$v=19$' || md5('pw' || i),
       10737418240, 1, timestamptz '2024-01-01Z' + i * interval '1 minute', timestamptz '2024-01-01Z' + i * interval '1 minute'
FROM generate_series(1::bigint, 200 * :scale) i;
INSERT INTO user_profiles
SELECT i, 'User ' || i, CASE WHEN i % 3 = 0 THEN 'upload' ELSE 'none' END,
       CASE WHEN i % 3 = 0 THEN 'user/' || i || '/v1' END, CASE WHEN i % 3 = 0 THEN 1 ELSE 0 END,
       timestamptz '2024-01-01Z' + i * interval '1 minute'
FROM generate_series(1::bigint, 200 * :scale) i;
INSERT INTO folders (id, name, parent_id, owner_user_id, policy_id, created_at, updated_at, deleted_at)
SELECT i, 'folder-' || md5('f' || i), CASE WHEN i > 200 * :scale THEN 1 + (i * 7) % (200 * :scale) END,
       1 + (i - 1) % (200 * :scale), 1, timestamptz '2024-01-02Z' + i * interval '1 second',
       timestamptz '2024-01-02Z' + i * interval '1 second', CASE WHEN i % 50 = 0 THEN timestamptz '2024-06-01Z' END
FROM generate_series(1::bigint, 1000 * :scale) i;
INSERT INTO file_blobs (id, hash, size, policy_id, storage_path, thumbnail_path, thumbnail_processor, created_at, updated_at)
SELECT i, h, 1 + (i * 7919) % 5000000, 1,
       substr(h, 1, 2) || '/' || substr(h, 3, 2) || '/' || h,
       CASE WHEN i % 4 = 0 THEN '_thumb/img/1/' || substr(h, 1, 2) || '/' || substr(h, 3, 2) || '/' || h || '.webp' END,
       CASE WHEN i % 4 = 0 THEN 'img' END,
       timestamptz '2024-01-03Z' + i * interval '1 second', timestamptz '2024-01-03Z' + i * interval '1 second'
FROM (SELECT i, md5('blob' || i) || md5('b2' || i) AS h FROM generate_series(1::bigint, 20000 * :scale) i) s;
INSERT INTO files (id, name, folder_id, blob_id, size, owner_user_id, mime_type, created_at, updated_at, deleted_at)
SELECT i, 'document ' || md5('name' || i) || '.pdf', 1 + (i * 13) % (1000 * :scale), i, 1 + (i * 7919) % 5000000,
       1 + (1 + (i * 13) % (1000 * :scale) - 1) % (200 * :scale), 'application/pdf',
       timestamptz '2024-01-04Z' + i * interval '1 second', timestamptz '2024-01-04Z' + i * interval '1 second',
       CASE WHEN i % 40 = 0 THEN timestamptz '2024-07-01Z' END
FROM generate_series(1::bigint, 20000 * :scale) i;
INSERT INTO file_revision_histories (id, file_id, current_revision_id, created_at)
SELECT i, i * 4, i * 2, timestamptz '2024-01-05Z' + i * interval '1 second'
FROM generate_series(1::bigint, 5000 * :scale) i;
INSERT INTO file_revisions (id, history_id, file_id, version, blob_id, logical_size, is_current, retired_at, created_at)
SELECT r, (r + 1) / 2, ((r + 1) / 2) * 4, 2 - r % 2, ((r + 1) / 2) * 4, 1 + ((((r + 1) / 2) * 4) * 7919) % 5000000,
       r % 2 = 0, CASE WHEN r % 6 = 1 THEN timestamptz '2024-08-01Z' END, timestamptz '2024-01-06Z' + r * interval '1 second'
FROM generate_series(1::bigint, 10000 * :scale) r;
INSERT INTO shares (id, token, user_id, file_id, folder_id, max_downloads, created_at)
SELECT i, md5('share' || i), 1 + i % (200 * :scale), CASE WHEN i % 2 = 0 THEN i * 3 END,
       CASE WHEN i % 2 = 1 THEN 1 + i % (1000 * :scale) END, i % 10, timestamptz '2024-01-07Z' + i * interval '1 second'
FROM generate_series(1::bigint, 1000 * :scale) i;
INSERT INTO upload_sessions
SELECT md5('upload' || i), 1 + i % (200 * :scale), 1, 1 + i % (1000 * :scale), 'upload-' || i || '.bin',
       i * 1048576, 1048576, i, i / 2, '.uploads/' || md5('upload' || i), 'uploading',
       timestamptz '2024-01-08Z' + i * interval '1 second', timestamptz '2024-02-08Z' + i * interval '1 second'
FROM generate_series(1::bigint, 100 * :scale) i;
-- doctor rules: usage and reference counts agree with files and revisions.
UPDATE users u SET storage_used = coalesce(f.s, 0) + coalesce(r.s, 0)
FROM users u2
LEFT JOIN (SELECT owner_user_id, sum(size) s FROM files GROUP BY 1) f ON f.owner_user_id = u2.id
LEFT JOIN (SELECT fi.owner_user_id, sum(rv.logical_size) s FROM file_revisions rv JOIN files fi ON fi.id = rv.file_id
           WHERE NOT rv.is_current AND rv.retired_at IS NULL GROUP BY 1) r ON r.owner_user_id = u2.id
WHERE u.id = u2.id;
UPDATE file_blobs b SET ref_count = c.n
FROM (SELECT blob_id, count(*) n FROM (SELECT blob_id FROM files
      UNION ALL SELECT blob_id FROM file_revisions WHERE NOT is_current AND retired_at IS NULL AND blob_id IS NOT NULL) x
      GROUP BY 1) c
WHERE b.id = c.blob_id;

-- ---- the writer --------------------------------------------------------------
-- Step k: one upload (blob + file + owner's usage), every 3rd step a
-- rename of an existing file, every 5th step a share removed. All values
-- derive from k and the scale only.
CREATE FUNCTION writer_step(k bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    sc integer;
    sz bigint := 1 + (k * 104729) % 100000;
    owner bigint;
    h text := md5('w' || k) || md5('w2' || k);
BEGIN
    SELECT scale INTO sc FROM writer_state WHERE id = 1;
    owner := 1 + k % (200 * sc);
    INSERT INTO file_blobs (id, hash, size, policy_id, storage_path, ref_count, created_at, updated_at)
    VALUES (100000000 + k, h, sz, 1, substr(h, 1, 2) || '/' || substr(h, 3, 2) || '/' || h, 1,
            timestamptz '2025-01-01Z' + k * interval '1 second', timestamptz '2025-01-01Z' + k * interval '1 second');
    INSERT INTO files (id, name, folder_id, blob_id, size, owner_user_id, mime_type, created_at, updated_at)
    VALUES (100000000 + k, 'upload ' || k || '.bin', 1 + (owner - 1), 100000000 + k, sz, owner,
            'application/octet-stream', timestamptz '2025-01-01Z' + k * interval '1 second',
            timestamptz '2025-01-01Z' + k * interval '1 second');
    UPDATE users SET storage_used = storage_used + sz, updated_at = timestamptz '2025-01-01Z' + k * interval '1 second'
    WHERE id = owner;
    IF k % 3 = 0 THEN
        UPDATE files SET name = 'renamed ' || k, updated_at = timestamptz '2025-01-01Z' + k * interval '1 second'
        WHERE id = 1 + (k * 31) % (20000 * sc);
    END IF;
    IF k % 5 = 0 THEN
        DELETE FROM shares WHERE id = k / 5;
    END IF;
    UPDATE writer_state SET k = writer_step.k WHERE id = 1;
END $$;

-- Commit one step after another until writer_state.stop is set.
CREATE PROCEDURE writer_run(pause_ms integer) LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    halt boolean;
BEGIN
    LOOP
        SELECT k + 1, stop INTO n, halt FROM writer_state WHERE id = 1;
        EXIT WHEN halt;
        PERFORM writer_step(n);
        COMMIT;
        IF pause_ms > 0 THEN
            PERFORM pg_sleep(pause_ms / 1000.0);
        END IF;
    END LOOP;
END $$;

-- Replay steps 1..upto in one transaction (the reference a snapshot must equal).
CREATE FUNCTION writer_replay(upto bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    i bigint;
BEGIN
    FOR i IN (SELECT k + 1 FROM writer_state WHERE id = 1) .. upto LOOP
        PERFORM writer_step(i);
    END LOOP;
END $$;
