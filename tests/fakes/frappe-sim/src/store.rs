//! Per-site storage: one MariaDB database (and DB user) per site, like a real bench. The site's
//! `site_config.json` names its database and password; nothing is kept in memory.

use std::path::Path;

use pbkdf2::Pbkdf2;
use pbkdf2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError};
use sqlx::{ConnectOptions, Connection, MySqlConnection, Row};

/// Where MariaDB is: site_config → common_site_config → `FRAPPE_SIM_DB_HOST`/`_PORT` →
/// 127.0.0.1:3306.
pub fn db_address(bench: &Path, site_config: Option<&Map<String, Value>>) -> (String, u16) {
    let common = read_json(&bench.join("sites/common_site_config.json")).unwrap_or_default();
    let pick = |key: &str| {
        site_config
            .and_then(|c| c.get(key).cloned())
            .or_else(|| common.get(key).cloned())
    };
    let host = pick("db_host")
        .and_then(|v| v.as_str().map(str::to_owned))
        .or_else(|| std::env::var("FRAPPE_SIM_DB_HOST").ok())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = pick("db_port")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|p| u16::try_from(p).ok())
        .or_else(|| {
            std::env::var("FRAPPE_SIM_DB_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
        })
        .unwrap_or(3306);
    (host, port)
}

/// Reads a JSON object file.
pub fn read_json(path: &Path) -> Option<Map<String, Value>> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// MariaDB's error number, if `e` is a server error.
pub fn mysql_errno(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// A MariaDB error rendered like pymysql: `(1045, "Access denied …")`.
pub fn pymysql_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let errno = db
                .try_downcast_ref::<MySqlDatabaseError>()
                .map_or(0, MySqlDatabaseError::number);
            let kind = if errno == 1045 || errno == 1049 || errno == 2003 {
                "OperationalError"
            } else {
                "InternalError"
            };
            format!("pymysql.err.{kind}: ({errno}, \"{}\")", db.message())
        }
        other => format!(
            "pymysql.err.OperationalError: (2003, \"Can't connect to MySQL server: {other}\")"
        ),
    }
}

fn options(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    db: Option<&str>,
) -> MySqlConnectOptions {
    let mut o = MySqlConnectOptions::new()
        .host(host)
        .port(port)
        .username(user);
    if !password.is_empty() {
        o = o.password(password);
    }
    if let Some(db) = db {
        o = o.database(db);
    }
    o.disable_statement_logging()
}

/// A root connection for creating and dropping site databases.
/// The root password the simulated bench's MariaDB asks for (`FRAPPE_SIM_ROOT_PASSWORD`):
/// a real bench cannot work with an empty one, so the sim's root has one, mapped to the test
/// server's real root account (`FRAPPE_SIM_MARIADB_ROOT_PASSWORD`, empty by default).
pub const SIM_ROOT_PASSWORD: &str = "frappe-sim-root";

pub async fn connect_root(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
) -> Result<MySqlConnection, sqlx::Error> {
    let sim_root = std::env::var("FRAPPE_SIM_ROOT_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| SIM_ROOT_PASSWORD.to_owned());
    let real = std::env::var("FRAPPE_SIM_MARIADB_ROOT_PASSWORD").unwrap_or_default();
    let (user, password) = if user == "root" && password == sim_root {
        ("root", real.as_str())
    } else {
        (user, password)
    };
    MySqlConnection::connect_with(&options(host, port, user, password, None)).await
}

/// A connection as the site's own DB user (what frappe does for every request).
pub async fn connect_site(
    bench: &Path,
    config: &Map<String, Value>,
) -> Result<MySqlConnection, sqlx::Error> {
    let (host, port) = db_address(bench, Some(config));
    let db = config
        .get("db_name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let pw = config
        .get("db_password")
        .and_then(Value::as_str)
        .unwrap_or_default();
    MySqlConnection::connect_with(&options(&host, port, db, pw, Some(db))).await
}

/// True if the database exists.
pub async fn database_exists(root: &mut MySqlConnection, db: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
        .bind(db)
        .fetch_one(&mut *root)
        .await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

/// Creates the site database, its user and its tables. `db` and `password` are validated
/// (`[a-z0-9_]`, alphanumeric) by the caller, so formatting them into DDL is safe.
pub async fn create_site_db(
    root: &mut MySqlConnection,
    db: &str,
    password: &str,
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(&format!(
        "CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\
         DROP USER IF EXISTS '{db}'@'%';\
         CREATE USER '{db}'@'%' IDENTIFIED BY '{password}';\
         GRANT ALL PRIVILEGES ON `{db}`.* TO '{db}'@'%';\
         FLUSH PRIVILEGES;\
         CREATE TABLE `{db}`.`tabDoc` (doctype VARCHAR(140) NOT NULL, name VARCHAR(255) NOT NULL, \
            data LONGTEXT NOT NULL, PRIMARY KEY (doctype, name));\
         CREATE TABLE `{db}`.`__Auth` (doctype VARCHAR(140) NOT NULL, name VARCHAR(255) NOT NULL, \
            fieldname VARCHAR(140) NOT NULL, password TEXT NOT NULL, PRIMARY KEY (doctype, name, fieldname));\
         CREATE TABLE `{db}`.`tabSessions` (sid VARCHAR(64) NOT NULL PRIMARY KEY, user VARCHAR(255) NOT NULL, \
            expires_at BIGINT NOT NULL);\
         CREATE TABLE `{db}`.`tabInstalled Application` (app_name VARCHAR(140) NOT NULL PRIMARY KEY, \
            idx INT NOT NULL);"
    ))
    .execute(&mut *root)
    .await?;
    Ok(())
}

/// Drops the site database and its user.
pub async fn drop_site_db(root: &mut MySqlConnection, db: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(&format!(
        "DROP DATABASE IF EXISTS `{db}`; DROP USER IF EXISTS '{db}'@'%'; DROP USER IF EXISTS '{db}'@'localhost';"
    ))
    .execute(&mut *root)
    .await?;
    Ok(())
}

/// `frappe.generate_hash`-style random hex.
pub fn random_hex(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// A random alphanumeric string (DB passwords).
pub fn random_alnum(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// pbkdf2-sha256 with passlib's default 29000 rounds (what frappe stores), as a PHC string.
pub fn hash_password(password: &str) -> String {
    let raw: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&raw).expect("16 bytes make a valid salt");
    let params = pbkdf2::Params {
        rounds: 29_000,
        output_length: 32,
    };
    Pbkdf2
        .hash_password_customized(
            password.as_bytes(),
            Some(pbkdf2::Algorithm::Pbkdf2Sha256.ident()),
            None,
            params,
            &salt,
        )
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// Checks a password against a stored PHC hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Pbkdf2.verify_password(password.as_bytes(), &h).is_ok())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn now_str() -> String {
    chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

/// Site data access as the site's DB user.
pub struct SiteDb<'c> {
    pub conn: &'c mut MySqlConnection,
}

/// Outcome of inserting a document.
pub enum Insert {
    Inserted(Value),
    Duplicate,
}

impl SiteDb<'_> {
    pub async fn get_doc(
        &mut self,
        doctype: &str,
        name: &str,
    ) -> Result<Option<Value>, sqlx::Error> {
        let row = sqlx::query("SELECT data FROM `tabDoc` WHERE doctype = ? AND name = ?")
            .bind(doctype)
            .bind(name)
            .fetch_optional(&mut *self.conn)
            .await?;
        Ok(row
            .and_then(|r| r.try_get::<String, _>(0).ok())
            .and_then(|d| serde_json::from_str(&d).ok()))
    }

    pub async fn insert_doc(
        &mut self,
        doctype: &str,
        name: &str,
        doc: &Value,
    ) -> Result<Insert, sqlx::Error> {
        let res = sqlx::query("INSERT INTO `tabDoc` (doctype, name, data) VALUES (?, ?, ?)")
            .bind(doctype)
            .bind(name)
            .bind(doc.to_string())
            .execute(&mut *self.conn)
            .await;
        match res {
            Ok(_) => Ok(Insert::Inserted(doc.clone())),
            Err(e) if mysql_errno(&e) == Some(1062) => Ok(Insert::Duplicate),
            Err(e) => Err(e),
        }
    }

    pub async fn save_doc(
        &mut self,
        doctype: &str,
        name: &str,
        doc: &Value,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE `tabDoc` SET data = ? WHERE doctype = ? AND name = ?")
            .bind(doc.to_string())
            .bind(doctype)
            .bind(name)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// Every document of a doctype, in no particular order (callers sort and page).
    pub async fn list_docs(&mut self, doctype: &str) -> Result<Vec<Value>, sqlx::Error> {
        let rows = sqlx::query("SELECT data FROM `tabDoc` WHERE doctype = ?")
            .bind(doctype)
            .fetch_all(&mut *self.conn)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .filter_map(|d| serde_json::from_str(&d).ok())
            .collect())
    }

    /// Deletes a document with its passwords (`delete_doc` calls `delete_all_passwords_for`)
    /// and, for a User, its sessions. False if there was no such document.
    pub async fn delete_doc(&mut self, doctype: &str, name: &str) -> Result<bool, sqlx::Error> {
        let gone = sqlx::query("DELETE FROM `tabDoc` WHERE doctype = ? AND name = ?")
            .bind(doctype)
            .bind(name)
            .execute(&mut *self.conn)
            .await?
            .rows_affected()
            > 0;
        sqlx::query("DELETE FROM `__Auth` WHERE doctype = ? AND name = ?")
            .bind(doctype)
            .bind(name)
            .execute(&mut *self.conn)
            .await?;
        if doctype == "User" {
            sqlx::query("DELETE FROM `tabSessions` WHERE user = ?")
                .bind(name)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(gone)
    }

    /// `remove_encrypted_password`: forgets one stored password.
    pub async fn delete_auth(
        &mut self,
        doctype: &str,
        name: &str,
        field: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM `__Auth` WHERE doctype = ? AND name = ? AND fieldname = ?")
            .bind(doctype)
            .bind(name)
            .bind(field)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    pub async fn set_auth(
        &mut self,
        doctype: &str,
        name: &str,
        field: &str,
        value: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "REPLACE INTO `__Auth` (doctype, name, fieldname, password) VALUES (?, ?, ?, ?)",
        )
        .bind(doctype)
        .bind(name)
        .bind(field)
        .bind(value)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    pub async fn get_auth(
        &mut self,
        doctype: &str,
        name: &str,
        field: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT password FROM `__Auth` WHERE doctype = ? AND name = ? AND fieldname = ?",
        )
        .bind(doctype)
        .bind(name)
        .bind(field)
        .fetch_optional(&mut *self.conn)
        .await?;
        Ok(row.and_then(|r| r.try_get::<String, _>(0).ok()))
    }

    /// Stores a new password hash for a user.
    pub async fn set_password(&mut self, user: &str, password: &str) -> Result<(), sqlx::Error> {
        self.set_auth("User", user, "password", &hash_password(password))
            .await
    }

    /// Checks a user's password (and that the user is enabled).
    pub async fn check_password(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<bool, sqlx::Error> {
        let Some(doc) = self.get_doc("User", user).await? else {
            return Ok(false);
        };
        if doc.get("enabled").and_then(Value::as_i64) == Some(0) {
            return Ok(false);
        }
        Ok(self
            .get_auth("User", user, "password")
            .await?
            .is_some_and(|h| verify_password(password, &h)))
    }

    /// `generate_keys`: keeps the api_key (creates one the first time), always rotates the secret.
    pub async fn generate_keys(
        &mut self,
        user: &str,
    ) -> Result<Option<(String, String)>, sqlx::Error> {
        let Some(mut doc) = self.get_doc("User", user).await? else {
            return Ok(None);
        };
        let api_key = match doc.get("api_key").and_then(Value::as_str) {
            Some(k) if !k.is_empty() => k.to_owned(),
            _ => {
                let k = random_hex(15);
                doc["api_key"] = json!(k);
                doc["modified"] = json!(now_str());
                self.save_doc("User", user, &doc).await?;
                k
            }
        };
        let secret = random_hex(15);
        self.set_auth("User", user, "api_secret", &sha256_hex(&secret))
            .await?;
        Ok(Some((api_key, secret)))
    }

    /// A key pair set on the User document itself (as `generate_keys` does by assigning
    /// `api_key` and the `api_secret` Password field and saving).
    pub async fn set_api_keys(
        &mut self,
        user: &str,
        key: &str,
        secret: &str,
    ) -> Result<(), sqlx::Error> {
        if let Some(mut doc) = self.get_doc("User", user).await? {
            doc["api_key"] = json!(key);
            self.save_doc("User", user, &doc).await?;
        }
        self.set_auth("User", user, "api_secret", &sha256_hex(secret))
            .await
    }

    /// The enabled user owning this key pair, if the secret matches.
    pub async fn user_for_token(
        &mut self,
        key: &str,
        secret: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT name FROM `tabDoc` WHERE doctype = 'User' \
             AND JSON_UNQUOTE(JSON_EXTRACT(data, '$.api_key')) = ?",
        )
        .bind(key)
        .fetch_optional(&mut *self.conn)
        .await?;
        let Some(user) = row.and_then(|r| r.try_get::<String, _>(0).ok()) else {
            return Ok(None);
        };
        let stored = self.get_auth("User", &user, "api_secret").await?;
        Ok(stored.filter(|h| *h == sha256_hex(secret)).map(|_| user))
    }

    pub async fn new_session(&mut self, user: &str) -> Result<String, sqlx::Error> {
        let sid = random_hex(56);
        sqlx::query("INSERT INTO `tabSessions` (sid, user, expires_at) VALUES (?, ?, ?)")
            .bind(&sid)
            .bind(user)
            .bind(chrono::Utc::now().timestamp() + 612_000)
            .execute(&mut *self.conn)
            .await?;
        Ok(sid)
    }

    pub async fn session_user(&mut self, sid: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query("SELECT user FROM `tabSessions` WHERE sid = ? AND expires_at > ?")
            .bind(sid)
            .bind(chrono::Utc::now().timestamp())
            .fetch_optional(&mut *self.conn)
            .await?;
        Ok(row.and_then(|r| r.try_get::<String, _>(0).ok()))
    }

    /// `_generate_temporary_login_link`'s key: Frappe keeps it in its Redis cache
    /// (`one_time_login_key:<key>`, expiring in `minutes`); the sim keeps it in the site's
    /// database, in a table made on first use (sites made before it have none).
    pub async fn new_login_key(&mut self, user: &str, minutes: i64) -> Result<String, sqlx::Error> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS `__one_time_login_key` (login_key VARCHAR(64) NOT NULL \
             PRIMARY KEY, user VARCHAR(255) NOT NULL, expires_at BIGINT NOT NULL)",
        )
        .execute(&mut *self.conn)
        .await?;
        // frappe.generate_hash(): 56 hex characters by default, like a `sid`.
        let key = random_hex(56);
        sqlx::query(
            "INSERT INTO `__one_time_login_key` (login_key, user, expires_at) VALUES (?, ?, ?)",
        )
        .bind(&key)
        .bind(user)
        .bind(chrono::Utc::now().timestamp() + minutes * 60)
        .execute(&mut *self.conn)
        .await?;
        Ok(key)
    }

    /// `login_via_key`: the user a live key names, deleting the key (it works once).
    pub async fn take_login_key(&mut self, key: &str) -> Result<Option<String>, sqlx::Error> {
        let taken = sqlx::query(
            "DELETE FROM `__one_time_login_key` WHERE login_key = ? AND expires_at > ? RETURNING user",
        )
        .bind(key)
        .bind(chrono::Utc::now().timestamp())
        .fetch_optional(&mut *self.conn)
        .await;
        match taken {
            Ok(row) => Ok(row.and_then(|r| r.try_get::<String, _>(0).ok())),
            // No key was ever issued on this site: no table.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42S02") => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn installed_apps(&mut self) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query("SELECT app_name FROM `tabInstalled Application` ORDER BY idx")
            .fetch_all(&mut *self.conn)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .collect())
    }

    pub async fn add_installed_app(&mut self, app: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO `tabInstalled Application` (app_name, idx) \
             SELECT ?, COALESCE(MAX(idx), 0) + 1 FROM `tabInstalled Application`",
        )
        .bind(app)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    /// Every row of the site's tables as SQL-ish text (the backup "dump").
    pub async fn dump(&mut self) -> Result<String, sqlx::Error> {
        let mut out = String::from("-- frappe-sim dump\n");
        let rows = sqlx::query("SELECT doctype, name, data FROM `tabDoc` ORDER BY doctype, name")
            .fetch_all(&mut *self.conn)
            .await?;
        for r in rows {
            let (dt, name, data): (String, String, String) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            out.push_str(&format!(
                "INSERT INTO `tabDoc` VALUES ({}, {}, {});\n",
                json!(dt),
                json!(name),
                json!(data)
            ));
        }
        for app in self.installed_apps().await? {
            out.push_str(&format!(
                "INSERT INTO `tabInstalled Application` VALUES ({});\n",
                json!(app)
            ));
        }
        Ok(out)
    }
}

/// A User document shaped like frappe's (the fields the transcripts show).
pub fn new_user_doc(
    email: &str,
    first: &str,
    last: Option<&str>,
    user_type: &str,
    roles: &[String],
    owner: &str,
) -> Value {
    let now = now_str();
    let full_name = match last {
        Some(l) if !l.is_empty() => format!("{first} {l}"),
        _ => first.to_owned(),
    };
    let username: String = email
        .split('@')
        .next()
        .unwrap_or_default()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    let roles: Vec<Value> = roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "name": random_hex(10), "owner": owner, "creation": now, "modified": now,
                "modified_by": owner, "docstatus": 0, "idx": i + 1, "role": r,
                "parent": email, "parentfield": "roles", "parenttype": "User", "doctype": "Has Role"
            })
        })
        .collect();
    json!({
        "name": email, "owner": owner, "creation": now, "modified": now, "modified_by": owner,
        "docstatus": 0, "idx": 0, "enabled": 1, "email": email, "first_name": first,
        "last_name": last, "full_name": full_name, "username": username, "time_zone": "UTC",
        "send_welcome_email": 0, "user_type": user_type, "new_password": "",
        "logout_all_sessions": 1, "doctype": "User", "user_emails": [], "roles": roles,
        "social_logins": [], "block_modules": [], "defaults": []
    })
}
