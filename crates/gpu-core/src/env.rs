//! On/off environment variables (`WGRAD_FUSION`, `WGRAD_REPLAY`,
//! `WGRAD_REQUIRE_GPU`, ...; docs/environment.md), all read one way so that
//! `off` means off for every one of them. Variables with other values
//! (device names, sizes, tiles) are parsed where they are used.

use std::collections::HashSet;
use std::sync::Mutex;

/// The value of an on/off variable: `1`, `on`, `true`, `yes` or `0`, `off`,
/// `false`, `no`, in any case, spaces around ignored; `None` for anything
/// else (the empty string included).
pub fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Reads the on/off variable `name` ([`parse_switch`]); unset or empty, it
/// is `default`. Any other value also gives `default`, and a warning on
/// stderr (once per variable): a misspelt tuning switch must not stop a
/// training run, nor be ignored silently.
pub fn switch(name: &str, default: bool) -> bool {
    let Some(value) = std::env::var_os(name) else { return default };
    let text = value.to_string_lossy();
    if text.trim().is_empty() {
        return default;
    }
    parse_switch(&text).unwrap_or_else(|| {
        static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        if warned.get_or_insert_with(HashSet::new).insert(name.to_string()) {
            let default = if default { "on" } else { "off" };
            eprintln!("wgrad: {name}={text:?} is not on/off (1/0, on/off, true/false, yes/no): left {default}");
        }
        default
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_read_every_spelling_and_nothing_else() {
        for on in ["1", "on", "ON", " true ", "Yes"] {
            assert_eq!(parse_switch(on), Some(true), "{on:?}");
        }
        for off in ["0", "off", "False", "no ", "NO"] {
            assert_eq!(parse_switch(off), Some(false), "{off:?}");
        }
        for neither in ["", "2", "enabled", "of", "0x1"] {
            assert_eq!(parse_switch(neither), None, "{neither:?}");
        }
    }

    #[test]
    fn an_unset_empty_or_unreadable_switch_keeps_its_default() {
        // Names no other test reads, so setting them here races with nothing.
        let name = "WGRAD_TEST_SWITCH_ENV_RS";
        for default in [false, true] {
            std::env::remove_var(name);
            assert_eq!(switch(name, default), default, "unset");
            for (value, want) in [("", default), ("maybe", default), ("off", false), ("on", true)] {
                std::env::set_var(name, value);
                assert_eq!(switch(name, default), want, "{value:?}, default {default}");
            }
        }
        std::env::remove_var(name);
    }
}
