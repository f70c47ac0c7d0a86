//! User and group look-ups in the host's `/etc/passwd` and `/etc/group` (services run with
//! host users; the container root usually has no account database of its own).

use std::fs;

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
}

fn passwd() -> Vec<UserEntry> {
    let text = fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 6 {
                return None;
            }
            Some(UserEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

fn groups() -> Vec<GroupEntry> {
    let text = fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
            })
        })
        .collect()
}

pub fn user_by_name(name: &str) -> Option<UserEntry> {
    passwd().into_iter().find(|u| u.name == name)
}

pub fn user_by_uid(uid: u32) -> Option<UserEntry> {
    passwd().into_iter().find(|u| u.uid == uid)
}

pub fn group_by_name(name: &str) -> Option<GroupEntry> {
    groups().into_iter().find(|g| g.name == name)
}

pub fn group_by_gid(gid: u32) -> Option<GroupEntry> {
    groups().into_iter().find(|g| g.gid == gid)
}

/// Resolve Pebble's `user`/`user-id`/`group`/`group-id` quadruple to numeric ids the way
/// Pebble does: names win over ids, and with only a user the group is that user's primary
/// group. `Ok(None)` for a side that was not given. Errors carry Pebble's texts.
pub fn resolve(
    user: Option<&str>,
    user_id: Option<u32>,
    group: Option<&str>,
    group_id: Option<u32>,
) -> Result<(Option<u32>, Option<u32>), String> {
    let user = user.filter(|s| !s.is_empty());
    let group = group.filter(|s| !s.is_empty());
    let mut uid = user_id;
    let mut primary_gid = None;
    if let Some(name) = user {
        let u = user_by_name(name)
            .ok_or_else(|| format!("cannot look up user and group: user: unknown user {name}"))?;
        uid = Some(u.uid);
        primary_gid = Some(u.gid);
    } else if let Some(id) = user_id {
        primary_gid = user_by_uid(id).map(|u| u.gid);
    }
    let mut gid = group_id;
    if let Some(name) = group {
        let g = group_by_name(name)
            .ok_or_else(|| format!("cannot look up user and group: group: unknown group {name}"))?;
        gid = Some(g.gid);
    }
    if gid.is_none() && uid.is_some() {
        gid = primary_gid;
    }
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_and_unknown_users_fail_with_pebbles_text() {
        assert_eq!(
            resolve(Some("root"), None, None, None),
            Ok((Some(0), Some(0)))
        );
        assert_eq!(resolve(None, None, None, None), Ok((None, None)));
        assert_eq!(
            resolve(Some("no-such-user-x"), None, None, None),
            Err("cannot look up user and group: user: unknown user no-such-user-x".into())
        );
    }
}
