-- AsterDrive-shaped schema for MySQL/MariaDB (tables of docs/asterdrive.md),
-- deterministic data, and a deterministic writer. MariaDB 10.11 (uses the
-- SEQUENCE engine's seq_1_to_N tables).
--
--   mysql DB < asterdrive_mysql.sql && mysql DB -e 'CALL seed(N)'   (N=1 ~ 8 MB)
--
-- Everything is a function of the scale N and of the writer step number k:
-- the state after steps 1..K is always the same, whatever the timing.
-- writer_run() commits steps 1, 2, 3, ... in one session (so commits are
-- serialised) until the row of coffer_ctl.writer_ctl says stop; each step
-- records its k in writer_state. A consistent snapshot therefore holds the
-- seeded data plus exactly steps 1..K for the K it shows, and a database
-- seeded alike that replays 1..K (writer_replay) is the only state a
-- correct restore may equal.

CREATE TABLE seaql_migrations (
    version     VARCHAR(191) NOT NULL PRIMARY KEY,
    applied_at  BIGINT NOT NULL
) ENGINE=InnoDB;
CREATE TABLE storage_policies (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name            VARCHAR(255) NOT NULL,
    connector_id    VARCHAR(64) NOT NULL,
    storage_config  JSON NOT NULL,
    content_dedup   BOOLEAN NOT NULL DEFAULT FALSE,
    is_default      BOOLEAN NOT NULL DEFAULT FALSE,
    max_file_size   BIGINT NOT NULL DEFAULT 0,
    created_at      DATETIME(6) NOT NULL,
    updated_at      DATETIME(6) NOT NULL
) ENGINE=InnoDB;
CREATE TABLE users (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username        VARCHAR(191) NOT NULL UNIQUE,
    email           VARCHAR(191) NOT NULL UNIQUE,
    password_hash   VARCHAR(255) NOT NULL,
    role            VARCHAR(32) NOT NULL DEFAULT 'user',
    status          VARCHAR(32) NOT NULL DEFAULT 'active',
    storage_used    BIGINT NOT NULL DEFAULT 0,
    storage_quota   BIGINT NOT NULL DEFAULT 0,
    policy_id       BIGINT NULL,
    totp_secret_enc TEXT NULL,
    created_at      DATETIME(6) NOT NULL,
    updated_at      DATETIME(6) NOT NULL,
    CONSTRAINT fk_users_policy FOREIGN KEY (policy_id) REFERENCES storage_policies(id)
) ENGINE=InnoDB;
CREATE TABLE user_profiles (
    user_id         BIGINT NOT NULL PRIMARY KEY,
    display_name    VARCHAR(255) NULL,
    avatar_source   ENUM('none', 'gravatar', 'upload') NOT NULL DEFAULT 'none',
    avatar_key      VARCHAR(255) NULL,
    avatar_version  INT NOT NULL DEFAULT 0,
    updated_at      DATETIME(6) NOT NULL,
    CONSTRAINT fk_profiles_user FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE folders (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name            VARCHAR(255) NOT NULL,
    parent_id       BIGINT NULL,
    owner_user_id   BIGINT NULL,
    team_id         BIGINT NULL,
    policy_id       BIGINT NULL,
    created_at      DATETIME(6) NOT NULL,
    updated_at      DATETIME(6) NOT NULL,
    deleted_at      DATETIME(6) NULL,
    KEY idx_folders_parent (parent_id),
    CONSTRAINT fk_folders_parent FOREIGN KEY (parent_id) REFERENCES folders(id),
    CONSTRAINT fk_folders_owner FOREIGN KEY (owner_user_id) REFERENCES users(id),
    CONSTRAINT fk_folders_policy FOREIGN KEY (policy_id) REFERENCES storage_policies(id)
) ENGINE=InnoDB;
CREATE TABLE file_blobs (
    id                  BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    hash                CHAR(64) NOT NULL,
    size                BIGINT NOT NULL,
    policy_id           BIGINT NOT NULL,
    storage_path        VARCHAR(255) NOT NULL,
    backing             ENUM('stored', 'virtual_empty') NOT NULL DEFAULT 'stored',
    thumbnail_path      VARCHAR(255) NULL,
    thumbnail_processor VARCHAR(64) NULL,
    ref_count           BIGINT NOT NULL DEFAULT 0,
    created_at          DATETIME(6) NOT NULL,
    updated_at          DATETIME(6) NOT NULL,
    KEY idx_file_blobs_hash (hash),
    CONSTRAINT fk_blobs_policy FOREIGN KEY (policy_id) REFERENCES storage_policies(id)
) ENGINE=InnoDB;
CREATE TABLE files (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name            VARCHAR(255) NOT NULL,
    folder_id       BIGINT NULL,
    blob_id         BIGINT NOT NULL,
    size            BIGINT NOT NULL,
    owner_user_id   BIGINT NULL,
    team_id         BIGINT NULL,
    mime_type       VARCHAR(127) NOT NULL,
    is_locked       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      DATETIME(6) NOT NULL,
    updated_at      DATETIME(6) NOT NULL,
    deleted_at      DATETIME(6) NULL,
    KEY idx_files_folder (folder_id),
    KEY idx_files_blob (blob_id),
    CONSTRAINT fk_files_folder FOREIGN KEY (folder_id) REFERENCES folders(id),
    CONSTRAINT fk_files_blob FOREIGN KEY (blob_id) REFERENCES file_blobs(id),
    CONSTRAINT fk_files_owner FOREIGN KEY (owner_user_id) REFERENCES users(id)
) ENGINE=InnoDB;
CREATE TABLE file_revision_histories (
    id                  BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    file_id             BIGINT NOT NULL UNIQUE,
    current_revision_id BIGINT NULL,
    created_at          DATETIME(6) NOT NULL,
    CONSTRAINT fk_hist_file FOREIGN KEY (file_id) REFERENCES files(id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE file_revisions (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    history_id      BIGINT NOT NULL,
    file_id         BIGINT NOT NULL,
    version         INT NOT NULL,
    blob_id         BIGINT NULL,
    logical_size    BIGINT NOT NULL,
    is_current      BOOLEAN NOT NULL DEFAULT FALSE,
    retired_at      DATETIME(6) NULL,
    created_at      DATETIME(6) NOT NULL,
    KEY idx_file_revisions_blob (blob_id),
    CONSTRAINT fk_rev_hist FOREIGN KEY (history_id) REFERENCES file_revision_histories(id) ON DELETE CASCADE,
    CONSTRAINT fk_rev_file FOREIGN KEY (file_id) REFERENCES files(id) ON DELETE CASCADE,
    CONSTRAINT fk_rev_blob FOREIGN KEY (blob_id) REFERENCES file_blobs(id)
) ENGINE=InnoDB;
CREATE TABLE shares (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    token           VARCHAR(64) NOT NULL UNIQUE,
    user_id         BIGINT NOT NULL,
    file_id         BIGINT NULL,
    folder_id       BIGINT NULL,
    password_hash   VARCHAR(255) NULL,
    expires_at      DATETIME(6) NULL,
    created_at      DATETIME(6) NOT NULL,
    CONSTRAINT fk_shares_user FOREIGN KEY (user_id) REFERENCES users(id),
    CONSTRAINT fk_shares_file FOREIGN KEY (file_id) REFERENCES files(id) ON DELETE CASCADE,
    CONSTRAINT fk_shares_folder FOREIGN KEY (folder_id) REFERENCES folders(id) ON DELETE CASCADE,
    CONSTRAINT chk_share_target CHECK ((file_id IS NULL) <> (folder_id IS NULL))
) ENGINE=InnoDB;
CREATE TABLE upload_sessions (
    id              CHAR(36) NOT NULL PRIMARY KEY,
    user_id         BIGINT NOT NULL,
    object_temp_key VARCHAR(255) NOT NULL,
    policy_id       BIGINT NOT NULL,
    total_size      BIGINT NOT NULL,
    created_at      DATETIME(6) NOT NULL
) ENGINE=InnoDB;
CREATE TABLE system_config (
    `key`           VARCHAR(191) NOT NULL PRIMARY KEY,
    value           TEXT NOT NULL
) ENGINE=InnoDB;
-- maintained by a trigger: if the trigger fired during a restore, the
-- restored count would be off
CREATE TABLE file_stats (
    id              TINYINT NOT NULL PRIMARY KEY,
    files_inserted  BIGINT NOT NULL
) ENGINE=InnoDB;
CREATE TABLE writer_state (
    id  TINYINT NOT NULL PRIMARY KEY,
    k   BIGINT NOT NULL
) ENGINE=InnoDB;

CREATE VIEW v_user_usage AS
    SELECT u.id AS user_id, u.username, COUNT(f.id) AS files, COALESCE(SUM(f.size), 0) AS bytes
    FROM users u LEFT JOIN files f ON f.owner_user_id = u.id GROUP BY u.id, u.username;
-- a view over a view: created after it on restore
CREATE VIEW v_heavy_users AS SELECT user_id, username FROM v_user_usage WHERE bytes > 1000000;

DELIMITER ;;
CREATE TRIGGER trg_files_count AFTER INSERT ON files FOR EACH ROW
BEGIN
    UPDATE file_stats SET files_inserted = files_inserted + 1 WHERE id = 1;
END;;

CREATE FUNCTION det_size(n BIGINT) RETURNS BIGINT DETERMINISTIC
    RETURN (n * 7919) % 200000 + IF(n % 17 = 0, 0, 1);;

CREATE PROCEDURE seed(scale INT)
BEGIN
    DECLARE nusers INT DEFAULT 20 * scale;
    DECLARE nblobs INT DEFAULT 20000 * scale;
    SET @t0 = TIMESTAMP'2024-01-01 00:00:00';
    INSERT INTO seaql_migrations VALUES ('m20240101_000001_create_tables', 1704067200),
        ('m20240301_000002_add_revisions', 1709251200), ('m20240601_000003_add_shares', 1717200000);
    INSERT INTO storage_policies VALUES
        (1, 'Local', 'local', '{"base_path": "data/uploads", "content_dedup": false}', 0, 1, 0, @t0, @t0),
        (2, 'Archive', 'local', '{"base_path": "/srv/archive"}', 1, 0, 1073741824, @t0, @t0);
    INSERT INTO system_config VALUES ('avatar_dir', 'data/avatar'), ('site_name', 'Aster ''Drive'' \\ test'),
        ('motd', 'Welcome 🚀 — ünïcödé'), ('empty', '');
    INSERT INTO file_stats VALUES (1, 0);
    INSERT INTO writer_state VALUES (1, 0);
    INSERT INTO users (id, username, email, password_hash, role, storage_used, storage_quota, policy_id,
                       totp_secret_enc, created_at, updated_at)
        SELECT seq, CONCAT('user', seq), CONCAT('user', seq, '@example.com'),
               CONCAT('$argon2id$v=19$m=19456,t=2,p=1$', SHA2(CONCAT('salt', seq), 256)),
               IF(seq = 1, 'admin', 'user'), 0, 10737418240, IF(seq % 5 = 0, 2, 1),
               IF(seq % 3 = 0, NULL, TO_BASE64(UNHEX(SHA2(CONCAT('totp', seq), 256)))),
               @t0 + INTERVAL seq MINUTE, @t0 + INTERVAL seq MINUTE
        FROM seq_1_to_100000 WHERE seq <= nusers;
    INSERT INTO user_profiles
        SELECT id, IF(id % 4 = 0, NULL, CONCAT('User ', id, IF(id % 7 = 0, ' 😀', ''))),
               ELT(1 + id % 3, 'none', 'gravatar', 'upload'), IF(id % 3 = 2, CONCAT('user/', id, '/v1'), NULL),
               IF(id % 3 = 2, 1, 0), @t0
        FROM users;
    INSERT INTO folders (id, name, parent_id, owner_user_id, policy_id, created_at, updated_at, deleted_at)
        SELECT id, 'root', NULL, id, 1, @t0, @t0, NULL FROM users;
    INSERT INTO folders (id, name, parent_id, owner_user_id, policy_id, created_at, updated_at, deleted_at)
        SELECT 1000 + seq, CONCAT('folder ', seq), 1 + seq % nusers, 1 + seq % nusers, 1,
               @t0 + INTERVAL seq SECOND, @t0 + INTERVAL seq SECOND,
               IF(seq % 11 = 0, @t0 + INTERVAL seq HOUR, NULL)
        FROM seq_1_to_100000 WHERE seq <= 50 * scale;
    INSERT INTO file_blobs (id, hash, size, policy_id, storage_path, backing, thumbnail_path,
                            thumbnail_processor, ref_count, created_at, updated_at)
        SELECT seq, SHA2(CONCAT('blob', seq), 256), det_size(seq), 1,
               CONCAT(SUBSTR(SHA2(CONCAT('key', seq), 256), 1, 2), '/', SUBSTR(SHA2(CONCAT('key', seq), 256), 3, 2),
                      '/', SUBSTR(SHA2(CONCAT('key', seq), 256), 1, 32)),
               IF(det_size(seq) % 200000 = (seq * 7919) % 200000, 'virtual_empty', 'stored'),
               IF(seq % 4 = 0, CONCAT('_thumb/image/1/', SHA2(CONCAT('blob', seq), 256), '.webp'), NULL),
               IF(seq % 4 = 0, 'image', NULL), 1, @t0 + INTERVAL seq SECOND, @t0 + INTERVAL seq SECOND
        FROM seq_1_to_10000000 WHERE seq <= nblobs;
    INSERT INTO files (id, name, folder_id, blob_id, size, owner_user_id, team_id, mime_type, is_locked,
                       created_at, updated_at, deleted_at)
        SELECT seq, CONCAT('document-', seq, ELT(1 + seq % 5, '.pdf', '.txt', '.jpg', ' (copy).png', '''quoted''.md')),
               IF(seq % 3 = 0, 1000 + 1 + seq % (50 * scale), 1 + seq % nusers), seq, det_size(seq),
               1 + seq % nusers, NULL,
               ELT(1 + seq % 5, 'application/pdf', 'text/plain', 'image/jpeg', 'image/png', 'text/markdown'),
               seq % 97 = 0, @t0 + INTERVAL seq SECOND, @t0 + INTERVAL seq SECOND,
               IF(seq % 50 = 0, @t0 + INTERVAL seq DAY, NULL)
        FROM seq_1_to_10000000 WHERE seq <= nblobs;
    INSERT INTO file_revision_histories (id, file_id, current_revision_id, created_at)
        SELECT seq, seq * 10, seq * 2, @t0 FROM seq_1_to_10000000 WHERE seq <= nblobs / 10;
    INSERT INTO file_revisions (id, history_id, file_id, version, blob_id, logical_size, is_current, retired_at,
                                created_at)
        SELECT h.id * 2 - 1 + v.seq, h.id, h.file_id, v.seq + 1, h.file_id - 1 + v.seq, det_size(h.file_id),
               v.seq = 1, IF(v.seq = 0 AND h.id % 2 = 0, @t0 + INTERVAL h.id MINUTE, NULL), @t0
        FROM file_revision_histories h JOIN seq_0_to_1 v;
    INSERT INTO shares (id, token, user_id, file_id, folder_id, password_hash, expires_at, created_at)
        SELECT seq, SHA2(CONCAT('share', seq), 256), 1 + seq % nusers, IF(seq % 2 = 0, seq * 3, NULL),
               IF(seq % 2 = 0, NULL, 1 + seq % nusers), IF(seq % 5 = 0, 'x', NULL),
               IF(seq % 3 = 0, @t0 + INTERVAL 30 DAY, NULL), @t0
        FROM seq_1_to_10000000 WHERE seq <= nblobs / 20;
    INSERT INTO upload_sessions
        SELECT CONCAT(LPAD(HEX(seq), 8, '0'), '-0000-4000-8000-000000000000'), 1 + seq % nusers,
               CONCAT('.staging/', SHA2(CONCAT('up', seq), 256)), 1, det_size(seq), @t0
        FROM seq_1_to_100 WHERE seq <= 10 * scale;
    UPDATE users u SET storage_used = (SELECT COALESCE(SUM(size), 0) FROM files f WHERE f.owner_user_id = u.id);
    UPDATE file_blobs b SET ref_count = (SELECT COUNT(*) FROM files f WHERE f.blob_id = b.id)
        + (SELECT COUNT(*) FROM file_revisions r WHERE r.blob_id = b.id AND r.is_current = 0 AND r.retired_at IS NULL);
END;;

-- Step k of the writer: one upload (blob, file, usage), sometimes a rename
-- of an old file and a new share; a pure function of k and the seed.
CREATE PROCEDURE writer_step(k BIGINT)
BEGIN
    DECLARE u BIGINT;
    DECLARE sz BIGINT DEFAULT det_size(k + 1000003);
    DECLARE nusers BIGINT;
    DECLARE nfiles BIGINT;
    SELECT COUNT(*) INTO nusers FROM users;
    SELECT 20000 * (nusers DIV 20) INTO nfiles;
    SET u = 1 + k % nusers;
    INSERT INTO file_blobs (id, hash, size, policy_id, storage_path, backing, ref_count, created_at, updated_at)
        VALUES (100000000 + k, SHA2(CONCAT('w', k), 256), sz, 1, CONCAT('ww/', k), 'stored', 1,
                TIMESTAMP'2025-01-01 00:00:00' + INTERVAL k SECOND, TIMESTAMP'2025-01-01 00:00:00' + INTERVAL k SECOND);
    INSERT INTO files (id, name, folder_id, blob_id, size, owner_user_id, mime_type, created_at, updated_at)
        VALUES (100000000 + k, CONCAT('upload ', k, IF(k % 3 = 0, ' ✓', '')), u, 100000000 + k, sz, u,
                'application/octet-stream', TIMESTAMP'2025-01-01 00:00:00' + INTERVAL k SECOND,
                TIMESTAMP'2025-01-01 00:00:00' + INTERVAL k SECOND);
    UPDATE users SET storage_used = storage_used + sz WHERE id = u;
    IF k % 5 = 0 THEN
        UPDATE files SET name = CONCAT(name, '~'), updated_at = TIMESTAMP'2025-01-01 00:00:00' + INTERVAL k SECOND
            WHERE id = 1 + (k * 13) % nfiles;
    END IF;
    IF k % 7 = 0 THEN
        INSERT INTO shares (id, token, user_id, file_id, created_at)
            VALUES (100000000 + k, SHA2(CONCAT('wshare', k), 256), u, 100000000 + k, TIMESTAMP'2025-01-01 00:00:00');
    END IF;
    UPDATE writer_state SET k = k WHERE id = 1;
END;;

-- Commit steps until coffer_ctl.writer_ctl.stop is set (one transaction
-- per step; a short sleep keeps the rate modest).
CREATE PROCEDURE writer_run(sleep_s DOUBLE)
BEGIN
    DECLARE k BIGINT;
    DECLARE halt INT DEFAULT 0;
    SELECT w.k INTO k FROM writer_state w WHERE id = 1;
    WHILE halt = 0 DO
        SET k = k + 1;
        START TRANSACTION;
        CALL writer_step(k);
        COMMIT;
        IF sleep_s > 0 THEN
            DO SLEEP(sleep_s);
        END IF;
        SELECT stop INTO halt FROM coffer_ctl.writer_ctl WHERE id = 1;
    END WHILE;
END;;

CREATE PROCEDURE writer_replay(upto BIGINT)
BEGIN
    DECLARE k BIGINT DEFAULT 0;
    WHILE k < upto DO
        SET k = k + 1;
        CALL writer_step(k);
    END WHILE;
END;;
DELIMITER ;

-- Never enabled: it must come back as it was, not run.
CREATE EVENT ev_purge_staging ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE
    COMMENT 'purge stale upload sessions' DO DELETE FROM upload_sessions WHERE created_at < NOW() - INTERVAL 7 DAY;
