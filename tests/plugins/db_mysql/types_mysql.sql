-- Every column type, and the awkward cases a dump must carry exactly:
-- NULL vs '', NUL bytes, quotes, backslashes, newlines, emoji, extreme
-- numbers, zero dates, fractional seconds, large BLOBs (bigger than the
-- driver's 64 KiB escaping pieces), generated and invisible columns, a
-- table without primary key, awkward table names, a MyISAM table, a
-- sequence. Load into an empty database with the stock client:
--   mysql --default-character-set=utf8mb4 DB < types_mysql.sql
SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';

CREATE TABLE all_types (
    id          INT NOT NULL PRIMARY KEY,
    t_tiny      TINYINT NULL,
    t_utiny     TINYINT UNSIGNED NULL,
    t_small     SMALLINT NULL,
    t_medium    MEDIUMINT NULL,
    t_int       INT NULL,
    t_ubig      BIGINT UNSIGNED NULL,
    t_big       BIGINT NULL,
    t_dec       DECIMAL(65, 30) NULL,
    t_dec0      DECIMAL(10, 0) NULL,
    t_float     FLOAT NULL,
    t_double    DOUBLE NULL,
    t_bit1      BIT(1) NULL,
    t_bit64     BIT(64) NULL,
    t_bool      BOOLEAN NULL,
    t_date      DATE NULL,
    t_datetime  DATETIME(6) NULL,
    t_ts        TIMESTAMP(6) NULL DEFAULT NULL,
    t_time      TIME(6) NULL,
    t_year      YEAR NULL,
    t_char      CHAR(10) NULL,
    t_varchar   VARCHAR(255) NULL,
    t_latin1    VARCHAR(64) CHARACTER SET latin1 NULL,
    t_binary    BINARY(16) NULL,
    t_varbinary VARBINARY(255) NULL,
    t_tinytext  TINYTEXT NULL,
    t_text      TEXT NULL,
    t_medtext   MEDIUMTEXT NULL,
    t_longtext  LONGTEXT NULL,
    t_tinyblob  TINYBLOB NULL,
    t_blob      BLOB NULL,
    t_medblob   MEDIUMBLOB NULL,
    t_longblob  LONGBLOB NULL,
    t_enum      ENUM('a', 'b''c', 'd\\e') NULL,
    t_set       SET('x', 'y', 'z') NULL,
    t_json      JSON NULL,
    t_geom      GEOMETRY NULL,
    t_point     POINT NULL,
    t_uuid      UUID NULL,
    t_inet6     INET6 NULL,
    t_inet4     INET4 NULL,
    t_virtual   INT AS (t_int * 2) VIRTUAL,
    t_stored    VARCHAR(300) AS (CONCAT('v:', t_varchar)) STORED,
    t_invisible INT NULL INVISIBLE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT INTO all_types (id, t_tiny, t_utiny, t_small, t_medium, t_int, t_ubig, t_big, t_dec, t_dec0, t_float,
    t_double, t_bit1, t_bit64, t_bool, t_date, t_datetime, t_ts, t_time, t_year, t_char, t_varchar, t_latin1,
    t_binary, t_varbinary, t_tinytext, t_text, t_medtext, t_longtext, t_tinyblob, t_blob, t_medblob, t_longblob,
    t_enum, t_set, t_json, t_geom, t_point, t_uuid, t_inet6, t_inet4, t_invisible) VALUES
-- all NULL
(1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL),
-- empty, not NULL
(2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'0', b'0', FALSE, '2000-01-01', '2000-01-01 00:00:00', '2000-01-01 00:00:00',
    '00:00:00', 2000, '', '', '', '', '', '', '', '', '', '', '', '', '', 'a', '', '{}', NULL, NULL, NULL, NULL,
    NULL, 0),
-- extremes
(3, -128, 255, -32768, -8388608, -2147483648, 18446744073709551615, -9223372036854775808,
    -99999999999999999999999999999999999.999999999999999999999999999999, 9999999999,
    -3.40282e38, -1.7976931348623157e308, b'1', b'1111111111111111111111111111111111111111111111111111111111111111',
    TRUE, '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '838:59:59.000000', 2155,
    'full char!', REPEAT('x', 255), 'caf\xE9', UNHEX('00FF00FF00FF00FF00FF00FF00FF00FF'), UNHEX(REPEAT('FF', 255)),
    REPEAT('t', 255), REPEAT('text ', 10000), REPEAT('m', 70000), REPEAT('l', 200000),
    UNHEX(REPEAT('00', 255)), UNHEX(REPEAT('7F', 60000)), RANDOM_BYTES(1024), NULL,
    'b''c', 'x,y,z', '{"a": [1, 2.5, "x\\"y"], "b": null, "emoji": "😀"}',
    ST_GeomFromText('POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))'), ST_GeomFromText('POINT(-1.5 2.25)'),
    '123e4567-e89b-12d3-a456-426614174000', '2001:db8::ff00:42:8329', '192.168.0.1', 2147483647),
-- the other end, tiny and awkward values
(4, 127, 1, 32767, 8388607, 2147483647, 1, 9223372036854775807,
    0.000000000000000000000000000001, -1, 1.17549e-38, 4.9406564584124654e-324, b'0', b'1000000000000000000000000000000000000000000000000000000000000001',
    NULL, '0000-00-00', '0000-00-00 00:00:00', '1970-01-01 00:00:01', '-838:59:59.999999', 1901,
    'ab', 'it''s a "quote" and a back\\slash; and a semicolon', 'ÿ',
    UNHEX('00'), UNHEX('0000'), 'tab\there', 'line1\nline2\r\nline3', 'nul\0byte', 'ctrl-z \Z end',
    UNHEX('5C27220A0D00'), UNHEX('27273B3B'), NULL, UNHEX('00'),
    'd\\e', '', '[]', ST_GeomFromText('LINESTRING(0 0, 1 1, 2 4)'), ST_GeomFromText('POINT(0 0)'),
    '00000000-0000-0000-0000-000000000000', '::', '0.0.0.0', -1),
-- text that looks like SQL, emoji and every script
(5, 1, 2, 3, 4, 5, 6, 7, 3.14159265358979323846264338327950, 42, 3.14159274, 2.718281828459045, b'1', b'101', TRUE,
    '2024-02-29', '2024-02-29 12:34:56.5', '2024-02-29 12:34:56.000001', '12:34:56.789', 2024,
    '😀😀', '🚀 ünïcödé 中文 العربية ελληνικά — ''); DROP TABLE all_types; --', 'plain',
    UNHEX('DEADBEEF'), UNHEX('CAFEBABE'), '\\', '\\\\', '''', '"', '\'\'', UNHEX('FF'), UNHEX('5C'), UNHEX('0A'),
    'a', 'x', '"just a string"', NULL, NULL, 'ffffffff-ffff-ffff-ffff-ffffffffffff', '::ffff:1.2.3.4',
    '255.255.255.255', NULL);

-- One row bigger than the driver's batch limit (1 MiB) on its own.
INSERT INTO all_types (id, t_longblob, t_longtext) VALUES (6, RANDOM_BYTES(1024), REPEAT('big ', 400000));
UPDATE all_types SET t_longblob = (SELECT GROUP_CONCAT(RANDOM_BYTES(1024) SEPARATOR '') FROM seq_1_to_1500) WHERE id = 6;

-- No primary key, duplicate rows.
CREATE TABLE no_pk (a INT, b VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO no_pk VALUES (1, 'x'), (1, 'x'), (NULL, NULL), (2, '');

-- Awkward names (identifiers cannot hold characters beyond the BMP, so no
-- emoji here; they are in the data above).
CREATE TABLE `we'ird"na\me` (`col``tick` INT NOT NULL PRIMARY KEY, `semi;colon` VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO `we'ird"na\me` VALUES (1, ';'), (2, '\\'), (3, '`');
CREATE TABLE `dots.and/slash ünï` (id INT NOT NULL PRIMARY KEY, v TEXT) ENGINE=InnoDB;
INSERT INTO `dots.and/slash ünï` VALUES (1, 'ünï'), (2, NULL);
CREATE TABLE `select` (`from` INT NOT NULL PRIMARY KEY) ENGINE=InnoDB;
INSERT INTO `select` VALUES (0), (1);

-- AUTO_INCREMENT with an explicit 0 (kept as 0 on load).
CREATE TABLE ai_zero (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB;
SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION';
INSERT INTO ai_zero VALUES (0, 0), (5, 5);
SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';

-- Not transactional: dumped under the read lock, with a warning.
CREATE TABLE legacy_counters (name VARCHAR(64) NOT NULL PRIMARY KEY, n BIGINT NOT NULL) ENGINE=MyISAM;
INSERT INTO legacy_counters VALUES ('downloads', 12345), ('views', 0), ('quote''d', -1);

CREATE SEQUENCE seq_ids START WITH 100 INCREMENT BY 5;
DO NEXTVAL(seq_ids);
DO NEXTVAL(seq_ids);
