//! What virt-api's VirtualMachine admission refuses, mirrored on the manifest as written.
//!
//! `kubectl apply` of a `kubevirt.io/v1` VirtualMachine passes virt-api's validating webhook
//! (`vms-admitter.go`), which runs the VMI spec validation of `vmi-create-admitter.go` and of
//! `pkg/network/admitter` on the VM's template, after KubeVirt's defaults. `check` runs before
//! the apply, so each function here re-states a family of those refusals as a pure function of
//! the manifest (a `serde_json::Value`), with KubeVirt's reason, and the pipeline fails where
//! the apply would. In a cluster virt-api itself refuses the same in the same admission chain:
//! nothing here needs the cluster.
//!
//! Mirrored on KubeVirt v1.6.6 with its default configuration (no feature gates, VM rollout
//! strategy LiveUpdate, which the memory-hotplug bounds of `memory.maxGuest` assume). KubeVirt
//! judges the template after its defaults, and so do these checks: a volume that no disk or
//! filesystem names gets a disk of its name, a CPU limit alone is also the request, a VM without
//! a CPU topology gets its sockets from its CPU limit or request, the guest memory defaults to
//! the memory request, limit or hugepage size. What an instancetype or a preference would fill
//! in (SMM, CPU and memory, device buses) is not judged when the VM names one.
//!
//! Left out: the CRD schema (the API server's OpenAPI validation), feature gates, the run
//! strategy, instancetype conflicts, what depends on the cluster's configuration (emulated
//! machine types, bridge binding on the pod network), and what the other rules already report
//! (duplicate names, disks without volumes, boot order, requests above limits, no memory at
//! all, malformed resource quantities, volume sources).
//!
//! Paths are KubeVirt's, except where KubeVirt names a parent or a field that is not in the
//! manifest: there the path names the field to change (`...efi.secureBoot` for Secure Boot
//! without SMM, the second pod network, `...affinity.nodeAffinity...`).
//!
//! Every function reads the manifest defensively: a field that is absent or of another type is
//! skipped (the schema refuses a wrong type), and nothing here panics.

use serde_json::Value;

/// One refusal: where (as KubeVirt writes paths: `spec.template.spec.domain.devices.disks[0].cdrom.bus`) and KubeVirt's reason, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub path: String,
    pub message: String,
}

/// The VMI template spec's path.
const T: &str = "spec.template.spec";
/// The domain's path.
const D: &str = "spec.template.spec.domain";

#[derive(Default)]
struct Out(Vec<Refusal>);

impl Out {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Refusal {
            path: path.into(),
            message: message.into(),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the manifest the way Go's decoder would see it.

fn template_spec(vm: &Value) -> &Value {
    &vm["spec"]["template"]["spec"]
}

/// A pointer field is set (Go: non-nil): present and not `null`.
fn set(v: &Value) -> bool {
    !v.is_null()
}

/// A string field (Go: the zero value "" when absent or null).
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A string field left empty: absent, null or "". (Another type is the schema's business.)
fn blank(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn on(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

fn uint(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// KubeVirt applies an instancetype and a preference to the VM's copy before it validates it:
/// they may fill in what the manifest leaves out (CPU and memory; devices, features, firmware).
fn shaped_elsewhere(vm: &Value) -> bool {
    set(&vm["spec"]["instancetype"]) || has_preference(vm)
}

/// A preference fills in unset device buses and types, features and firmware.
fn has_preference(vm: &Value) -> bool {
    set(&vm["spec"]["preference"])
}

/// A value quoted in a message, cut to keep the message on one short line.
fn clip(s: &str) -> String {
    const MAX: usize = 24;
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= MAX {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

/// The volume a disk (or ACPI table) names, as KubeVirt indexes volumes by name.
fn volume_named<'a>(volumes: &'a [Value], name: &str, last: bool) -> Option<&'a Value> {
    let mut matching = volumes.iter().filter(|v| v["name"].as_str() == Some(name));
    if last {
        matching.next_back()
    } else {
        matching.next()
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes name, label and path rules (k8s.io/apimachinery/pkg/util/validation).

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(inner)
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b.first().is_some_and(u8::is_ascii_alphanumeric)
                && b.last().is_some_and(u8::is_ascii_alphanumeric)
        })
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters; empty allowed if `empty_ok`.
fn is_label_shaped(s: &str, empty_ok: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return empty_ok;
    }
    b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// `IsQualifiedName`: a label key, `[prefix/]name`.
fn is_qualified_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [name] => is_label_shaped(name, false),
        [prefix, name] => {
            !prefix.is_empty() && is_dns1123_subdomain(prefix) && is_label_shaped(name, false)
        }
        _ => false,
    }
}

fn is_label_value(s: &str) -> bool {
    is_label_shaped(s, true)
}

/// `IsValidPortName`.
fn is_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && !s.contains("--")
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

/// `^([\da-fA-F]{4}):([\da-fA-F]{2}):([\da-fA-F]{2})\.([0-7]{1})$`
fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b':',
            10 => *c == b'.',
            11 => (b'0'..=b'7').contains(c),
            _ => c.is_ascii_hexdigit(),
        })
}

/// Go's `net.ParseMAC` accepting exactly six octets (KubeVirt refuses longer addresses):
/// `xx:xx:xx:xx:xx:xx`, `xx-xx-xx-xx-xx-xx` or `xxxx.xxxx.xxxx`.
fn is_mac48(s: &str) -> bool {
    let b = s.as_bytes();
    match b.len() {
        17 => {
            let sep = b[2];
            (sep == b':' || sep == b'-')
                && b.iter().enumerate().all(|(i, c)| {
                    if i % 3 == 2 {
                        *c == sep
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        14 => b.iter().enumerate().all(|(i, c)| {
            if i % 5 == 4 {
                *c == b'.'
            } else {
                c.is_ascii_hexdigit()
            }
        }),
        _ => false,
    }
}

/// Go's `net.ParseIP` as virt-api v1.6.6 runs it: it admits IPv4 fields with leading zeros
/// (`01.1.1.1`, seen on the real virt-api), which Rust's parser refuses.
fn parse_ip(s: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    // Retry with the leading zeros of a (trailing, for IPv6) dotted IPv4 part removed.
    let (head, tail) = match s.rfind(':') {
        Some(colon) => s.split_at(colon + 1),
        None => ("", s),
    };
    let fields: Vec<&str> = tail.split('.').collect();
    if fields.len() != 4
        || !fields
            .iter()
            .all(|f| !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let trimmed: Vec<&str> = fields
        .iter()
        .map(|f| match f.trim_start_matches('0') {
            "" => "0",
            rest => rest,
        })
        .collect();
    format!("{head}{}", trimmed.join(".")).parse().ok()
}

/// Go's `filepath.Clean` of a rooted path.
fn clean_rooted(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// KubeVirt's `validatePath`: an absolute path to a file, without relative components.
fn path_problem(path: &str) -> Option<&'static str> {
    if path == "/" {
        return Some("must not point to root");
    }
    let cleaned = clean_rooted(&format!("/{path}"));
    let provided = path.strip_suffix('/').unwrap_or(path);
    (cleaned != provided)
        .then_some("must be an absolute path to a file without relative components")
}

/// Go's `base64.StdEncoding.DecodeString`: the decoded length, or `None` where Go errs.
/// Standard alphabet, padding required, `\r` and `\n` ignored, trailing bits not checked.
fn std_base64_len(s: &str) -> Option<usize> {
    let chars: Vec<u8> = s.bytes().filter(|c| *c != b'\r' && *c != b'\n').collect();
    if !chars.len().is_multiple_of(4) {
        return None;
    }
    let alphabet = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    let quanta = chars.len() / 4;
    let mut length = 0;
    for (q, quantum) in chars.chunks(4).enumerate() {
        let padding = quantum.iter().rev().take_while(|c| **c == b'=').count();
        let last = q + 1 == quanta;
        if !quantum[..4 - padding].iter().all(alphabet) || padding > 2 || (padding > 0 && !last) {
            return None;
        }
        length += 3 - padding;
    }
    Some(length)
}

// ---------------------------------------------------------------------------------------------
// Kubernetes quantities (k8s.io/apimachinery/pkg/api/resource), exact, in nano-units.

const NANO: i128 = 1_000_000_000;

/// A quantity as Kubernetes holds it: the value times 10⁹, rounded away from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Nanos(i128);

impl Nanos {
    /// `Quantity.Value()`: rounded up to an integer.
    fn value(self) -> i128 {
        ceil_div(self.0, NANO)
    }

    /// `Quantity.MilliValue()`: rounded up to thousandths.
    fn milli(self) -> i128 {
        ceil_div(self.0, NANO / 1000)
    }
}

fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d != 0 && n > 0 { q + 1 } else { q }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parsed {
    Ok(Nanos),
    /// `ParseQuantity` fails for sure (a format or suffix error).
    Malformed,
    /// Numerically out of what is mirrored here: neither judged nor used.
    Unsure,
}

/// `resource.ParseQuantity`.
fn parse_quantity(s: &str) -> Parsed {
    if s.is_empty() {
        return Parsed::Malformed;
    }
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b[0] {
        b'-' => {
            positive = false;
            pos = 1;
        }
        b'+' => pos = 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Parsed::Ok(Nanos(0));
    }
    let digits_from = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = &s[digits_from..pos];
    let mut denom = "";
    let mut suffix = "";
    'parse: {
        if pos >= end {
            break 'parse;
        }
        if b[pos] == b'.' {
            pos += 1;
            let from = pos;
            while pos < end && b[pos].is_ascii_digit() {
                pos += 1;
            }
            denom = &s[from..pos];
            if pos >= end {
                break 'parse;
            }
        }
        let suffix_from = pos;
        while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
            pos += 1;
        }
        if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
            pos += 1;
        }
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos < end {
            return Parsed::Malformed;
        }
        suffix = &s[suffix_from..];
    }
    let (base10, exponent): (bool, i32) = match suffix {
        "" => (true, 0),
        "n" => (true, -9),
        "u" => (true, -6),
        "m" => (true, -3),
        "k" => (true, 3),
        "M" => (true, 6),
        "G" => (true, 9),
        "T" => (true, 12),
        "P" => (true, 15),
        "E" => (true, 18),
        "Ki" => (false, 10),
        "Mi" => (false, 20),
        "Gi" => (false, 30),
        "Ti" => (false, 40),
        "Pi" => (false, 50),
        "Ei" => (false, 60),
        _ => {
            let Some(rest) = suffix.strip_prefix(['e', 'E']).filter(|r| !r.is_empty()) else {
                return Parsed::Malformed;
            };
            let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if unsigned.is_empty() || !unsigned.bytes().all(|c| c.is_ascii_digit()) {
                return Parsed::Malformed;
            }
            match rest.parse::<i32>() {
                Ok(e) if (-40..=40).contains(&e) => (true, e),
                _ => return Parsed::Unsure,
            }
        }
    };
    if num.len() + denom.len() > 18 {
        return Parsed::Unsure;
    }
    let mut mantissa: i128 = 0;
    for c in num.bytes().chain(denom.bytes()) {
        mantissa = mantissa * 10 + i128::from(c - b'0');
    }
    let Ok(fraction_digits) = i32::try_from(denom.len()) else {
        return Parsed::Unsure;
    };
    let mut scale10 = 9 - fraction_digits;
    let mut multiplier: i128 = 1;
    if base10 {
        scale10 += exponent;
    } else {
        multiplier = 1 << exponent;
    }
    let Some(mut nanos) = mantissa.checked_mul(multiplier) else {
        return Parsed::Unsure;
    };
    if scale10 >= 0 {
        let Some(n) = 10_i128
            .checked_pow(scale10.unsigned_abs())
            .and_then(|p| nanos.checked_mul(p))
        else {
            return Parsed::Unsure;
        };
        nanos = n;
    } else {
        let Some(p) = 10_i128.checked_pow(scale10.unsigned_abs()) else {
            return Parsed::Unsure;
        };
        nanos = ceil_div(nanos, p);
    }
    if nanos > i128::from(i64::MAX) * NANO {
        return Parsed::Unsure;
    }
    Parsed::Ok(Nanos(if positive { nanos } else { -nanos }))
}

/// A quantity field as Go decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantity {
    Absent,
    Is(Nanos),
    /// Malformed, out of range or of another type: refused elsewhere, not used here.
    Bad,
}

impl Quantity {
    fn of(v: &Value) -> Quantity {
        let parsed = match v {
            Value::Null => return Quantity::Absent,
            Value::String(s) => parse_quantity(s.trim()),
            Value::Number(n) => parse_quantity(&n.to_string()),
            _ => return Quantity::Bad,
        };
        match parsed {
            Parsed::Ok(n) => Quantity::Is(n),
            _ => Quantity::Bad,
        }
    }

    /// The Go zero value when absent.
    fn nanos(self) -> Nanos {
        match self {
            Quantity::Is(n) => n,
            _ => Nanos(0),
        }
    }

    fn value(self) -> i128 {
        self.nanos().value()
    }

    fn is_zero(self) -> bool {
        self.nanos().0 == 0
    }
}

// ---------------------------------------------------------------------------------------------
// devices

/// Disks, inputs, sound, GPU displays, interface models/MACs/PCI addresses, I/O threads and
/// volume sources' own fields, as `validateDisks`, `validateBootOrder`, `validateVolumes`,
/// `validateInputDevices`, `validateSoundDevices` and `validateInterfacesFields` refuse them.
pub fn devices(vm: &Value) -> Vec<Refusal> {
    let mut out = Out::default();
    let spec = template_spec(vm);
    let devices = &spec["domain"]["devices"];
    let volumes = list(&spec["volumes"]);
    let shaped = has_preference(vm);

    for (i, disk) in list(&devices["disks"]).iter().enumerate() {
        let at = format!("{D}.devices.disks[{i}]");
        let targets: Vec<&str> = ["disk", "lun", "cdrom"]
            .into_iter()
            .filter(|t| set(&disk[*t]))
            .collect();
        if targets.len() > 1 {
            out.add(
                &at,
                format!(
                    "has {} targets; keep one (KubeVirt: can only have a single target type defined)",
                    targets.join(" and ")
                ),
            );
        }
        if let Some(kind) = targets.first().copied() {
            let bus = text(&disk[kind]["bus"]);
            let bus_at = format!("{at}.{kind}.bus");
            match bus {
                "" | "scsi" | "usb" => {}
                "ide" => out.add(
                    &bus_at,
                    "IDE bus is not supported (KubeVirt); use virtio for a disk, sata for a cdrom",
                ),
                "virtio" if kind == "cdrom" => out.add(
                    &bus_at,
                    "Bus type virtio is invalid for CD-ROM device (KubeVirt); use sata or scsi",
                ),
                "virtio" => {}
                "sata" if kind == "disk" && on(&disk["disk"]["readonly"]) => out.add(
                    &bus_at,
                    "sata hard-disks do not support read-only (KubeVirt); use virtio, or a cdrom",
                ),
                "sata" => {}
                other => out.add(
                    &bus_at,
                    format!(
                        "unrecognized bus {}, must be one of: [virtio scsi sata usb] (KubeVirt)",
                        clip(other)
                    ),
                ),
            }
            if on(&disk["dedicatedIOThread"]) && !bus.is_empty() && bus != "virtio" {
                out.add(
                    &at,
                    format!(
                        "IOThreads are not supported for disks on a {} bus (KubeVirt); use virtio",
                        clip(bus)
                    ),
                );
            }
        }

        let pci = text(&disk["disk"]["pciAddress"]);
        if set(&disk["disk"]) && !pci.is_empty() {
            let bus = text(&disk["disk"]["bus"]);
            if bus != "virtio" && !(bus.is_empty() && shaped) {
                out.add(
                    format!("{at}.disk.pciAddress"),
                    "setting a PCI address is only possible with bus type virtio (KubeVirt)",
                );
            }
            if !is_pci_address(pci) {
                out.add(
                    format!("{at}.disk.pciAddress"),
                    format!(
                        "malformed PCI address ({}); expected 0000:00:0a.0",
                        clip(pci)
                    ),
                );
            }
        }

        let serial = text(&disk["serial"]);
        if !serial.is_empty() {
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-');
            if !serial.chars().all(allowed) {
                out.add(
                    format!("{at}.serial"),
                    "serial must be made up of the following characters [A-Za-z0-9_.+-] (KubeVirt)",
                );
            }
            if serial.chars().count() > 256 {
                out.add(
                    format!("{at}.serial"),
                    "serial must be less than or equal to 256 in length (KubeVirt)",
                );
            }
        }

        let cache = text(&disk["cache"]);
        if !matches!(cache, "" | "none" | "writethrough" | "writeback") {
            out.add(
                format!("{at}.cache"),
                format!(
                    "cache has invalid value {}; use none, writethrough or writeback (KubeVirt)",
                    clip(cache)
                ),
            );
        }
        let io = text(&disk["io"]);
        if !matches!(io, "" | "native" | "threads") {
            out.add(
                format!("{at}.io"),
                format!(
                    "disk IO mode {} is not supported; supported modes are: native, threads (KubeVirt)",
                    clip(io)
                ),
            );
        }
        if let Some(policy) = disk["errorPolicy"].as_str()
            && !matches!(policy, "stop" | "ignore" | "report" | "enospace")
        {
            out.add(
                format!("{at}.errorPolicy"),
                format!(
                    "errorPolicy has invalid value \"{}\"; use stop, ignore, report or enospace",
                    clip(policy)
                ),
            );
        }
        block_size(&mut out, &at, &disk["blockSize"]);

        if let Some(volume) = volume_named(volumes, text(&disk["name"]), true) {
            if set(&disk["lun"])
                && !set(&volume["persistentVolumeClaim"])
                && !set(&volume["dataVolume"])
            {
                out.add(
                    format!("{at}.lun"),
                    "lun can only be mapped to a DataVolume or PersistentVolumeClaim volume (KubeVirt)",
                );
            }
            if set(&volume["downwardMetrics"]) {
                if !set(&disk["disk"]) {
                    out.add(
                        format!("{at}.disk"),
                        "a downwardMetrics volume must be mapped to a disk (KubeVirt); use disk: {}",
                    );
                } else if !matches!(text(&disk["disk"]["bus"]), "" | "virtio") {
                    out.add(
                        format!("{at}.disk.bus"),
                        "a downwardMetrics volume must be mapped to virtio bus (KubeVirt)",
                    );
                }
            }
        }
    }

    for (i, input) in list(&devices["inputs"]).iter().enumerate() {
        let at = format!("{D}.devices.inputs[{i}]");
        if !matches!(text(&input["bus"]), "" | "virtio" | "usb") {
            out.add(
                format!("{at}.bus"),
                "Input device can have only virtio or usb bus (KubeVirt)",
            );
        }
        let kind = text(&input["type"]);
        if kind != "tablet" && !(kind.is_empty() && shaped) {
            out.add(
                format!("{at}.type"),
                "Input device can have only tablet type (KubeVirt v1.6)",
            );
        }
    }

    let sound = &devices["sound"];
    if set(sound) {
        if !matches!(text(&sound["model"]), "" | "ich9" | "ac97") {
            out.add(
                format!("{D}.devices.sound.model"),
                "Sound device type is not supported. Options: 'ich9' or 'ac97' (KubeVirt)",
            );
        }
        if blank(&sound["name"]) {
            out.add(
                format!("{D}.devices.sound.name"),
                "Sound device requires a name field (KubeVirt)",
            );
        }
    }

    let ramfb_displays = list(&devices["gpus"])
        .iter()
        .filter(|gpu| {
            let display = &gpu["virtualGPUOptions"]["display"];
            let ramfb = &display["ramFB"];
            set(display)
                && !matches!(display["enabled"], Value::Bool(false))
                && (!set(ramfb) || on(&ramfb["enabled"]))
        })
        .count();
    if ramfb_displays > 1 {
        out.add(
            format!("{D}.devices.gpus"),
            "configuring multiple displays with ramfb is not valid (KubeVirt); keep ramFB on one GPU",
        );
    }

    for (i, iface) in list(&devices["interfaces"]).iter().enumerate() {
        let at = format!("{D}.devices.interfaces[{i}]");
        let model = text(&iface["model"]);
        if !matches!(
            model,
            "" | "e1000" | "e1000e" | "igb" | "ne2k_pci" | "pcnet" | "rtl8139" | "virtio"
        ) {
            out.add(
                format!("{at}.model"),
                format!(
                    "interface model {} is not supported (KubeVirt); use virtio, or e1000e for old guests",
                    clip(model)
                ),
            );
        }
        let mac = text(&iface["macAddress"]);
        if !mac.is_empty() && !is_mac48(mac) {
            out.add(
                format!("{at}.macAddress"),
                format!(
                    "malformed MAC address ({}) (KubeVirt); write six octets, 02:00:00:00:00:01",
                    clip(mac)
                ),
            );
        }
        let pci = text(&iface["pciAddress"]);
        if !pci.is_empty() && !is_pci_address(pci) {
            out.add(
                format!("{at}.pciAddress"),
                format!(
                    "malformed PCI address ({}); expected 0000:00:0a.0",
                    clip(pci)
                ),
            );
        }
    }

    io_threads(&mut out, &spec["domain"]);

    // KubeVirt gives a volume that no disk or filesystem names a disk without a target.
    let attached: Vec<&str> = list(&devices["disks"])
        .iter()
        .chain(list(&devices["filesystems"]))
        .filter_map(|d| d["name"].as_str())
        .collect();
    let mut counts = [0usize; 3];
    for (i, volume) in volumes.iter().enumerate() {
        let at = format!("{T}.volumes[{i}]");
        if set(&volume["downwardMetrics"])
            && volume["name"]
                .as_str()
                .is_some_and(|name| !attached.contains(&name))
        {
            out.add(
                &at,
                "a downwardMetrics volume must be mapped to a disk (KubeVirt): add a disk of its name with disk: {}",
            );
        }
        for (n, kind) in ["serviceAccount", "downwardMetrics", "memoryDump"]
            .into_iter()
            .enumerate()
        {
            if set(&volume[kind]) {
                counts[n] += 1;
            }
        }
        if let Some(path) = volume["containerDisk"]["path"].as_str()
            && !path.is_empty()
            && let Some(problem) = path_problem(path)
        {
            out.add(
                format!("{at}.containerDisk.path"),
                format!("containerDisk path {problem} (KubeVirt)"),
            );
        }
        let host_disk = &volume["hostDisk"];
        if set(host_disk) {
            if blank(&host_disk["path"]) {
                out.add(
                    format!("{at}.hostDisk.path"),
                    "path is required for hostDisk volume (KubeVirt)",
                );
            }
            let kind = &host_disk["type"];
            if kind.is_null() || kind.is_string() {
                let kind = text(kind);
                if !matches!(kind, "Disk" | "DiskOrCreate") {
                    out.add(
                        format!("{at}.hostDisk.type"),
                        format!(
                            "hostDisk type '{}' is invalid, allowed are 'Disk' or 'DiskOrCreate'",
                            clip(kind)
                        ),
                    );
                }
                if kind == "Disk"
                    && matches!(Quantity::of(&host_disk["capacity"]), Quantity::Is(n) if n.0 != 0)
                {
                    out.add(
                        format!("{at}.hostDisk.capacity"),
                        "hostDisk capacity is allowed only with type 'DiskOrCreate' (KubeVirt)",
                    );
                }
            }
        }
    }
    for (n, kind) in ["serviceAccount", "downwardMetrics", "memoryDump"]
        .into_iter()
        .enumerate()
    {
        if counts[n] > 1 {
            out.add(
                format!("{T}.volumes"),
                format!("more than one {kind} volume; keep one (KubeVirt: must have max one)"),
            );
        }
    }
    out.0
}

/// `validateBlockSize`.
fn block_size(out: &mut Out, at: &str, block: &Value) {
    let custom = &block["custom"];
    if !set(custom) {
        return;
    }
    let matching = &block["matchVolume"];
    if set(matching) && !matches!(matching["enabled"], Value::Bool(false)) {
        out.add(
            format!("{at}.blockSize"),
            "Block size matching can't be enabled together with a custom value (KubeVirt)",
        );
        return;
    }
    let (logical, physical) = (uint(&custom["logical"]), uint(&custom["physical"]));
    if logical > physical {
        out.add(
            format!("{at}.blockSize.custom.logical"),
            format!("Logical size {logical} must be the same or less than the physical size of {physical}"),
        );
        return;
    }
    for (name, size) in [("logical", logical), ("physical", physical)] {
        let problem = if size < 512 {
            "is less than the supported minimum size of 512"
        } else if size > 2_097_152 {
            "is greater than the supported maximum size of 2097152"
        } else if !size.is_power_of_two() {
            "is not a power of 2"
        } else {
            continue;
        };
        out.add(
            format!("{at}.blockSize.custom.{name}"),
            format!("Provided size of {size} {problem} (KubeVirt)"),
        );
    }
}

/// `validateIOThreadsPolicy`.
fn io_threads(out: &mut Out, domain: &Value) {
    let Some(policy) = domain["ioThreadsPolicy"].as_str() else {
        return;
    };
    if !matches!(policy, "shared" | "auto" | "supplementalPool") {
        out.add(
            format!("{D}.ioThreadsPolicy"),
            format!(
                "Invalid IOThreadsPolicy ({}); use shared, auto or supplementalPool (KubeVirt)",
                clip(policy)
            ),
        );
    }
    if policy == "supplementalPool" && uint(&domain["ioThreads"]["supplementalPoolThreadCount"]) < 1
    {
        out.add(
            format!("{D}.ioThreads.count"),
            "supplementalPool needs ioThreads.supplementalPoolThreadCount of at least 1 (KubeVirt)",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// firmware

/// Bootloader, Secure Boot and SMM, ACPI tables and kernel boot, as `validateFirmware`,
/// `validateFirmwareACPI` and `validateDomainSpec` refuse them.
pub fn firmware(vm: &Value) -> Vec<Refusal> {
    let mut out = Out::default();
    let spec = template_spec(vm);
    let domain = &spec["domain"];
    let firmware = &domain["firmware"];
    let bootloader = &firmware["bootloader"];
    let efi = &bootloader["efi"];

    if set(efi) && set(&bootloader["bios"]) {
        out.add(
            format!("{D}.firmware.bootloader"),
            "has both EFI and BIOS configured, but they are mutually exclusive (KubeVirt); keep one",
        );
    }

    // Secure Boot defaults to on with EFI; SMM is off unless features.smm is set (and not
    // disabled). KubeVirt's VM defaults do not turn SMM on; a preference may (an instancetype
    // has no features).
    let secure_boot = set(efi) && !matches!(efi["secureBoot"], Value::Bool(false));
    let smm = &domain["features"]["smm"];
    let smm_on = set(smm) && !matches!(smm["enabled"], Value::Bool(false));
    if secure_boot && !smm_on && !has_preference(vm) {
        // KubeVirt names `T.domain`; the field to change is secureBoot (or features.smm).
        out.add(
            format!("{D}.firmware.bootloader.efi.secureBoot"),
            "EFI SecureBoot (on by default) requires SMM, which is disabled: set features.smm: {} or \
             efi.secureBoot: false",
        );
    }

    let acpi = &firmware["acpi"];
    if set(acpi) {
        let volumes = list(&spec["volumes"]);
        let (slic, msdm) = (text(&acpi["slicNameRef"]), text(&acpi["msdmNameRef"]));
        if slic.is_empty() && msdm.is_empty() {
            out.add(
                format!("{D}.firmware.acpi"),
                "ACPI was set but no SLIC nor MSDM volume reference was set (KubeVirt); name a Secret volume",
            );
        }
        for (field, name) in [("slicNameRef", slic), ("msdmNameRef", msdm)] {
            if name.is_empty() {
                continue;
            }
            match volume_named(volumes, name, false) {
                Some(volume) if set(&volume["secret"]) => {}
                Some(_) => out.add(
                    format!("{D}.firmware.acpi.{field}"),
                    format!("{field} refers to Volume of unsupported type (KubeVirt); use a secret volume"),
                ),
                None => out.add(
                    format!("{D}.firmware.acpi.{field}"),
                    format!("{field} does not have a matching Volume (KubeVirt)"),
                ),
            }
        }
    }

    let kernel_boot = &firmware["kernelBoot"];
    if set(kernel_boot) {
        let container = &kernel_boot["container"];
        let at = format!("{D}.firmware.kernelBoot");
        if !set(container) {
            if !text(&kernel_boot["kernelArgs"]).is_empty() {
                out.add(
                    format!("{at}.kernelArgs"),
                    "kernel arguments cannot be provided without an external kernel (KubeVirt)",
                );
            }
        } else {
            if blank(&container["image"]) {
                out.add(
                    format!("{at}.container.image"),
                    "kernelBoot.container must be defined with an image (KubeVirt)",
                );
            }
            let (kernel, initrd) = (
                text(&container["kernelPath"]),
                text(&container["initrdPath"]),
            );
            if kernel.is_empty() && initrd.is_empty() {
                out.add(
                    format!("{at}.container"),
                    "kernelBoot.container needs at least one of kernelPath, initrdPath (KubeVirt)",
                );
            }
            for (field, path) in [("kernelPath", kernel), ("initrdPath", initrd)] {
                if let Some(problem) = (!path.is_empty()).then(|| path_problem(path)).flatten() {
                    out.add(
                        format!("{at}.container.{field}"),
                        format!("{field} {problem}"),
                    );
                }
            }
        }
    }
    out.0
}

// ---------------------------------------------------------------------------------------------
// networks

/// Network sources, interface bindings and states, forwarded ports, DHCP options and the DNS
/// config, as `pkg/network/admitter` and `validatePodDNSConfig` refuse them.
pub fn networks(vm: &Value) -> Vec<Refusal> {
    let mut out = Out::default();
    let spec = template_spec(vm);
    let networks = list(&spec["networks"]);

    let mut pods = 0_usize;
    let mut multus_defaults = 0;
    for (i, network) in networks.iter().enumerate() {
        let at = format!("{T}.networks[{i}]");
        let (pod, multus) = (set(&network["pod"]), set(&network["multus"]));
        pods += usize::from(pod);
        multus_defaults += usize::from(multus && on(&network["multus"]["default"]));
        if !pod && !multus {
            out.add(
                &at,
                "network has no type (KubeVirt: should have a network type); add pod: {} or multus",
            );
        } else if pod && multus {
            out.add(
                &at,
                "network has both pod and multus (KubeVirt: should have only one network type)",
            );
        }
        if multus && blank(&network["multus"]["networkName"]) {
            out.add(
                format!("{at}.multus.networkName"),
                "CNI delegating plugin must have a networkName (KubeVirt); name the NetworkAttachmentDefinition",
            );
        }
    }
    // Reported at each pod network after the first (KubeVirt names `T.interfaces`).
    for (i, _) in networks
        .iter()
        .enumerate()
        .filter(|(_, n)| set(&n["pod"]))
        .skip(1)
    {
        out.add(
            format!("{T}.networks[{i}]"),
            "a second pod network (KubeVirt: more than one interface is connected to a pod network); use multus",
        );
    }
    if multus_defaults > 1 {
        out.add(
            format!("{T}.networks"),
            "Multus CNI should only have one default network (KubeVirt)",
        );
    }
    if pods > 0 && multus_defaults > 0 {
        out.add(
            format!("{T}.networks"),
            "Pod network cannot be defined when Multus default network is defined (KubeVirt)",
        );
    }

    let network_named = |name: &str| {
        networks
            .iter()
            .rev()
            .find(|n| n["name"].as_str() == Some(name))
    };
    let default_network = networks
        .iter()
        .find(|n| set(&n["pod"]) || (set(&n["multus"]) && on(&n["multus"]["default"])));
    for (i, iface) in list(&spec["domain"]["devices"]["interfaces"])
        .iter()
        .enumerate()
    {
        let at = format!("{D}.devices.interfaces[{i}]");
        let name = text(&iface["name"]);
        let network = network_named(name);
        let on_pod = network.is_some_and(|n| set(&n["pod"]));
        let on_multus = network.is_some_and(|n| set(&n["multus"]));
        let methods = ["bridge", "slirp", "masquerade", "sriov", "macvtap", "passt"];
        if set(&iface["binding"]) && methods.iter().any(|m| set(&iface[*m])) {
            out.add(
                format!("{at}.binding"),
                "cannot have both binding plugin and interface binding method (KubeVirt); keep one",
            );
        }
        if set(&iface["masquerade"]) {
            if network.is_some() && !on_pod {
                out.add(
                    format!("{at}.name"),
                    "Masquerade interface only implemented with pod network (KubeVirt); use bridge here",
                );
            }
            if text(&iface["macAddress"]) == "02:00:00:00:00:00" {
                out.add(
                    format!("{at}.macAddress"),
                    "The requested MAC address is reserved for the in-pod bridge (KubeVirt); choose another",
                );
            }
        }
        if set(&iface["slirp"]) {
            out.add(
                format!("{at}.slirp"),
                "Slirp interface support has been discontinued since v1.3 (KubeVirt); use masquerade",
            );
        }
        if set(&iface["macvtap"]) && network.is_some() && !on_multus {
            out.add(
                format!("{at}.name"),
                "Macvtap interface only implemented with Multus network (KubeVirt)",
            );
        }
        if set(&iface["passt"]) && network.is_some() && !on_pod {
            out.add(
                format!("{at}.name"),
                "Passt interface only implemented with pod network (KubeVirt)",
            );
        }

        let state = text(&iface["state"]);
        if !matches!(state, "" | "absent" | "down" | "up") {
            out.add(
                format!("{at}.state"),
                format!(
                    "interface state value is unsupported: {} (KubeVirt); use up, down or absent",
                    clip(state)
                ),
            );
        }
        if set(&iface["sriov"]) && matches!(state, "down" | "up") {
            out.add(
                format!("{at}.state"),
                format!("interface state \"{state}\" is not supported for SR-IOV NICs (KubeVirt)"),
            );
        }
        if state == "absent" && !set(&iface["bridge"]) {
            out.add(
                format!("{at}.state"),
                "interface state \"absent\" is supported only for bridge binding (KubeVirt)",
            );
        }
        if state == "absent" && default_network.is_some_and(|n| n["name"].as_str() == Some(name)) {
            out.add(
                format!("{at}.state"),
                "interface state \"absent\" is not supported on default networks (KubeVirt)",
            );
        }

        if on_pod {
            ports(&mut out, &at, list(&iface["ports"]));
        }
        dhcp_options(&mut out, &at, &iface["dhcpOptions"]);
    }

    dns_config(&mut out, spec);
    out.0
}

/// `validatePortConfiguration` (interfaces on the pod network).
fn ports(out: &mut Out, at: &str, ports: &[Value]) {
    let mut names: Vec<&str> = Vec::new();
    for (p, port) in ports.iter().enumerate() {
        let at = format!("{at}.ports[{p}]");
        let name = text(&port["name"]);
        if !name.is_empty() {
            if names.contains(&name) {
                out.add(
                    format!("{at}.name"),
                    format!("Duplicate name of the port: {} (KubeVirt)", clip(name)),
                );
            }
            if !is_port_name(name) {
                out.add(
                    format!("{at}.name"),
                    format!(
                        "Invalid name of the port: {} (KubeVirt); 1-15 of a-z, 0-9, '-', with a letter",
                        clip(name)
                    ),
                );
            }
            names.push(name);
        }
        if let Some(number) = port["port"].as_i64() {
            if number == 0 {
                out.add(
                    &at,
                    "Port field is mandatory (KubeVirt): a port number above 0",
                );
            } else if !(0..=65536).contains(&number) {
                out.add(&at, "Port field must be in range 0 < x < 65536 (KubeVirt)");
            }
        }
        let protocol = text(&port["protocol"]);
        if !matches!(protocol, "" | "TCP" | "UDP") {
            out.add(
                format!("{at}.protocol"),
                format!(
                    "Unknown protocol {}, only TCP or UDP allowed (KubeVirt; upper case)",
                    clip(protocol)
                ),
            );
        }
    }
}

/// `validateDHCPOptions`.
fn dhcp_options(out: &mut Out, at: &str, options: &Value) {
    if !set(options) {
        return;
    }
    let private = list(&options["privateOptions"]);
    let numbers: Vec<i64> = private
        .iter()
        .map(|o| o["option"].as_i64().unwrap_or(0))
        .collect();
    let mut unique = numbers.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() < numbers.len() {
        out.add(
            format!("{at}.dhcpOptions.privateOptions"),
            "Found Duplicates: you have provided duplicate DHCPPrivateOptions (KubeVirt)",
        );
    }
    if numbers.iter().any(|n| !(224..=254).contains(n)) {
        out.add(
            format!("{at}.dhcpOptions.privateOptions"),
            "provided DHCPPrivateOptions are out of range, must be in range 224 to 254 (KubeVirt)",
        );
    }
    for (n, server) in list(&options["ntpServers"]).iter().enumerate() {
        let ipv4 = match parse_ip(text(server)) {
            Some(std::net::IpAddr::V4(_)) => true,
            Some(std::net::IpAddr::V6(v6)) => v6.to_ipv4_mapped().is_some(),
            None => false,
        };
        if server.is_string() && !ipv4 {
            out.add(
                format!("{at}.dhcpOptions.ntpServers[{n}]"),
                "NTP servers must be a list of valid IPv4 addresses (KubeVirt)",
            );
        }
    }
}

/// `validatePodDNSConfig` (a copy of Kubernetes' pod validation).
fn dns_config(out: &mut Out, spec: &Value) {
    let config = &spec["dnsConfig"];
    let at = format!("{T}.dnsConfig");
    let nameservers = list(&config["nameservers"]);
    if spec["dnsPolicy"].as_str() == Some("None") {
        if !set(config) {
            out.add(
                &at,
                "must provide `dnsConfig` when `dnsPolicy` is None (KubeVirt)",
            );
            return;
        }
        if nameservers.is_empty() {
            out.add(
                format!("{at}.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None (KubeVirt)",
            );
            return;
        }
    }
    if !set(config) {
        return;
    }
    if nameservers.len() > 3 {
        out.add(
            format!("{at}.nameservers"),
            "must not have more than 3 nameservers (KubeVirt, as Kubernetes)",
        );
    }
    for (n, server) in nameservers.iter().enumerate() {
        if let Some(server) = server.as_str()
            && parse_ip(server).is_none()
        {
            out.add(
                format!("{at}.nameservers[{n}]"),
                format!("must be valid IP address: {} (KubeVirt)", clip(server)),
            );
        }
    }
    let searches: Vec<&str> = list(&config["searches"]).iter().map(text).collect();
    if searches.len() > 6 {
        out.add(
            format!("{at}.searches"),
            "must not have more than 6 search paths (KubeVirt, as Kubernetes)",
        );
    }
    if searches.join(" ").len() > 256 {
        out.add(
            format!("{at}.searches"),
            "must not have more than 256 characters (including spaces) in the search list",
        );
    }
    for (n, search) in searches.iter().enumerate() {
        if !is_dns1123_subdomain(search) {
            out.add(
                format!("{at}.searches[{n}]"),
                format!(
                    "search domain {} is not a lowercase RFC 1123 subdomain",
                    clip(search)
                ),
            );
        }
    }
    for (n, option) in list(&config["options"]).iter().enumerate() {
        if blank(&option["name"]) {
            out.add(
                format!("{at}.options[{n}].name"),
                "Option.Name must not be empty (KubeVirt, as Kubernetes)",
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// names

/// Names KubeVirt checks the form of: disk names (they become container names), the hostname
/// and subdomain, interface names, the names a volume source must carry, and the kubevirt.io
/// labels reserved to KubeVirt on the template.
pub fn names(vm: &Value) -> Vec<Refusal> {
    let mut out = Out::default();
    let spec = template_spec(vm);
    let devices = &spec["domain"]["devices"];

    let labels = &vm["spec"]["template"]["metadata"]["labels"];
    if let Some(labels) = labels.as_object() {
        const RESERVED: [&str; 6] = [
            "kubevirt.io/created-by",
            "kubevirt.io/migrationJobUID",
            "kubevirt.io/nodeName",
            "kubevirt.io/migrationTargetNodeName",
            "kubevirt.io/schedulable",
            "kubevirt.io/install-strategy",
        ];
        for key in labels.keys().filter(|k| RESERVED.contains(&k.as_str())) {
            out.add(
                "spec.template.metadata.labels",
                format!(
                    "label {key} is reserved to KubeVirt and may not be set on a VM: remove it"
                ),
            );
        }
    }

    let hostname = text(&spec["hostname"]);
    if !hostname.is_empty() && !is_dns1123_label(hostname) {
        out.add(
            format!("{T}.hostname"),
            format!(
                "hostname {} does not conform to the DNS_LABEL rules (KubeVirt): a-z, 0-9, '-', ≤63",
                clip(hostname)
            ),
        );
    }
    let subdomain = text(&spec["subdomain"]);
    if !subdomain.is_empty() && !is_dns1123_subdomain(subdomain) {
        out.add(
            format!("{T}.subdomain"),
            format!(
                "subdomain {} does not conform to the DNS_SUBDOMAIN rules (KubeVirt)",
                clip(subdomain)
            ),
        );
    }

    let disks = list(&devices["disks"]);
    for (i, disk) in disks.iter().enumerate() {
        if let Some(name) = disk["name"].as_str()
            && !is_dns1123_label(name)
        {
            out.add(
                format!("{D}.devices.disks[{i}].name"),
                format!(
                    "disk name {} is not a lowercase RFC 1123 label (KubeVirt): a-z, 0-9, '-', ≤63",
                    clip(name)
                ),
            );
        }
    }
    // KubeVirt gives every volume no disk or filesystem names a disk of the volume's name.
    let attached: Vec<&str> = disks
        .iter()
        .chain(list(&devices["filesystems"]))
        .filter_map(|d| d["name"].as_str())
        .collect();
    for (i, volume) in list(&spec["volumes"]).iter().enumerate() {
        if let Some(name) = volume["name"].as_str()
            && !attached.contains(&name)
            && !is_dns1123_label(name)
        {
            out.add(
                format!("{T}.volumes[{i}].name"),
                format!(
                    "volume {} gets a disk of its name, which must be a lowercase RFC 1123 label (KubeVirt)",
                    clip(name)
                ),
            );
        }
    }

    for (i, iface) in list(&devices["interfaces"]).iter().enumerate() {
        if let Some(name) = iface["name"].as_str() {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
            if !valid {
                out.add(
                    format!("{D}.devices.interfaces[{i}].name"),
                    "Network interface name can only contain alphabetical characters, numbers, - or _",
                );
            }
        }
    }

    for (i, volume) in list(&spec["volumes"]).iter().enumerate() {
        let at = format!("{T}.volumes[{i}]");
        for (kind, field) in [
            ("dataVolume", "name"),
            ("configMap", "name"),
            ("secret", "secretName"),
            ("serviceAccount", "serviceAccountName"),
        ] {
            let source = &volume[kind];
            if set(source) && blank(&source[field]) {
                out.add(
                    format!("{at}.{kind}.{field}"),
                    format!("{kind}.{field} is a required field (KubeVirt); name the {kind}"),
                );
            }
        }
    }
    out.0
}

// ---------------------------------------------------------------------------------------------
// scheduling

/// Affinity and topology spread constraints (Kubernetes' pod rules, as KubeVirt copies them),
/// the eviction and start strategies, and the readiness and liveness probes.
pub fn scheduling(vm: &Value) -> Vec<Refusal> {
    let mut out = Out::default();
    let spec = template_spec(vm);
    let affinity = &spec["affinity"];
    let at = format!("{T}.affinity");

    let node = &affinity["nodeAffinity"];
    let required = &node["requiredDuringSchedulingIgnoredDuringExecution"];
    if set(required) {
        let at = format!(
            "{at}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        );
        let terms = list(&required["nodeSelectorTerms"]);
        if terms.is_empty() {
            out.add(
                &at,
                "must have at least one node selector term (KubeVirt, as Kubernetes); add one or drop it",
            );
        }
        for (t, term) in terms.iter().enumerate() {
            node_selector_term(&mut out, &format!("{at}[{t}]"), term);
        }
    }
    for (t, term) in list(&node["preferredDuringSchedulingIgnoredDuringExecution"])
        .iter()
        .enumerate()
    {
        let at = format!("{at}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{t}]");
        weight(&mut out, &at, &term["weight"]);
        node_selector_term(&mut out, &format!("{at}.preference"), &term["preference"]);
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let pods = &affinity[kind];
        for (t, term) in list(&pods["requiredDuringSchedulingIgnoredDuringExecution"])
            .iter()
            .enumerate()
        {
            let at = format!("{at}.{kind}.requiredDuringSchedulingIgnoredDuringExecution[{t}]");
            pod_affinity_term(&mut out, &at, term);
        }
        for (t, term) in list(&pods["preferredDuringSchedulingIgnoredDuringExecution"])
            .iter()
            .enumerate()
        {
            let at = format!("{at}.{kind}.preferredDuringSchedulingIgnoredDuringExecution[{t}]");
            weight(&mut out, &at, &term["weight"]);
            pod_affinity_term(
                &mut out,
                &format!("{at}.podAffinityTerm"),
                &term["podAffinityTerm"],
            );
        }
    }

    let constraints = list(&spec["topologySpreadConstraints"]);
    for (c, constraint) in constraints.iter().enumerate() {
        let at = format!("{T}.topologySpreadConstraints[{c}]");
        if let Some(skew) = constraint["maxSkew"].as_i64()
            && skew <= 0
        {
            out.add(
                format!("{at}.maxSkew"),
                format!("maxSkew {skew}: must be greater than zero (KubeVirt, as Kubernetes)"),
            );
        }
        if let Some(key) = constraint["topologyKey"].as_str() {
            if key.is_empty() {
                out.add(
                    format!("{at}.topologyKey"),
                    "topologyKey can not be empty (KubeVirt)",
                );
            } else if !is_qualified_name(key) {
                out.add(
                    format!("{at}.topologyKey"),
                    format!(
                        "topologyKey {} is not a valid label name (KubeVirt)",
                        clip(key)
                    ),
                );
            }
        }
        label_selector(
            &mut out,
            &format!("{at}.labelSelector"),
            &constraint["labelSelector"],
        );
        let key = (&constraint["topologyKey"], &constraint["whenUnsatisfiable"]);
        if constraints[c + 1..]
            .iter()
            .any(|other| (&other["topologyKey"], &other["whenUnsatisfiable"]) == key)
        {
            out.add(
                &at,
                "duplicate {topologyKey, whenUnsatisfiable} pair (KubeVirt, as Kubernetes); merge them",
            );
        }
    }

    if let Some(strategy) = spec["evictionStrategy"].as_str()
        && !matches!(
            strategy,
            "None" | "LiveMigrate" | "LiveMigrateIfPossible" | "External"
        )
    {
        out.add(
            format!("{T}.evictionStrategy"),
            format!(
                "unrecognized option: {}; use None, LiveMigrate, LiveMigrateIfPossible or External",
                clip(strategy)
            ),
        );
    }

    if let Some(strategy) = spec["startStrategy"].as_str() {
        if strategy != "Paused" {
            out.add(
                format!("{T}.startStrategy"),
                format!(
                    "unrecognized option: {} (KubeVirt); the only one is Paused",
                    clip(strategy)
                ),
            );
        } else if set(&spec["livenessProbe"]) {
            out.add(
                format!("{T}.startStrategy"),
                "Pausing VMI with LivenessProbe is not supported (KubeVirt); drop one of them",
            );
        }
    }

    let networks = list(&spec["networks"]);
    let pod_network = networks.iter().any(|n| set(&n["pod"]))
        || (networks.is_empty()
            && list(&spec["domain"]["devices"]["interfaces"]).is_empty()
            && !matches!(
                spec["domain"]["devices"]["autoattachPodInterface"],
                Value::Bool(false)
            ));
    for probe_name in ["readinessProbe", "livenessProbe"] {
        let probe = &spec[probe_name];
        if !set(probe) {
            continue;
        }
        let at = format!("{T}.{probe_name}");
        let handlers = ["httpGet", "tcpSocket", "exec", "guestAgentPing"]
            .iter()
            .filter(|h| set(&probe[**h]))
            .count();
        if handlers > 1 {
            out.add(
                &at,
                "must have exactly one probe type set (KubeVirt); keep one handler",
            );
        } else if handlers == 0 {
            out.add(
                &at,
                "needs one of tcpSocket, exec, httpGet or guestAgentPing (KubeVirt)",
            );
        }
        if !pod_network {
            for handler in ["httpGet", "tcpSocket"] {
                if set(&probe[handler]) {
                    out.add(
                        format!("{at}.{handler}"),
                        format!(
                            "{handler} is only allowed if the Pod Network is attached (KubeVirt)"
                        ),
                    );
                }
            }
        }
    }
    out.0
}

fn weight(out: &mut Out, at: &str, weight: &Value) {
    if let Some(w) = weight.as_i64()
        && !(1..=100).contains(&w)
    {
        out.add(
            format!("{at}.weight"),
            "weight must be in the range 1-100 (KubeVirt, as Kubernetes)",
        );
    }
}

/// `ValidateNodeSelectorTerm`. An operator outside the enum is the schema's refusal.
fn node_selector_term(out: &mut Out, at: &str, term: &Value) {
    for (e, expression) in list(&term["matchExpressions"]).iter().enumerate() {
        let at = format!("{at}.matchExpressions[{e}]");
        let values = &expression["values"];
        let count = list(values).len();
        match expression["operator"].as_str() {
            Some("In" | "NotIn") if count == 0 => out.add(
                format!("{at}.values"),
                "values must be specified when `operator` is 'In' or 'NotIn' (KubeVirt, as Kubernetes)",
            ),
            Some("Exists" | "DoesNotExist") if count > 0 => out.add(
                format!("{at}.values"),
                "values may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            Some("Gt" | "Lt") if count != 1 => out.add(
                format!("{at}.values"),
                "a single value must be specified when `operator` is 'Lt' or 'Gt' (KubeVirt)",
            ),
            _ => {}
        }
        if let Some(key) = expression["key"].as_str()
            && !is_qualified_name(key)
        {
            out.add(
                format!("{at}.key"),
                format!(
                    "key {} is not a valid label name (KubeVirt, as Kubernetes)",
                    clip(key)
                ),
            );
        }
    }
    for (f, field) in list(&term["matchFields"]).iter().enumerate() {
        let at = format!("{at}.matchFields[{f}]");
        let values = list(&field["values"]);
        match field["operator"].as_str() {
            Some("In" | "NotIn") if values.len() != 1 => out.add(
                format!("{at}.values"),
                "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            ),
            Some("Exists" | "DoesNotExist" | "Gt" | "Lt") => out.add(
                format!("{at}.operator"),
                "not a valid selector operator for a node field selector; use In or NotIn (KubeVirt)",
            ),
            _ => {}
        }
        if let Some(key) = field["key"].as_str() {
            if key != "metadata.name" {
                out.add(
                    format!("{at}.key"),
                    format!(
                        "{} is not a valid field selector key; use metadata.name (KubeVirt)",
                        clip(key)
                    ),
                );
            } else {
                for (v, value) in values.iter().enumerate() {
                    if let Some(value) = value.as_str()
                        && !is_dns1123_subdomain(value)
                    {
                        out.add(
                            format!("{at}.values[{v}]"),
                            format!(
                                "{} is not a valid node name (KubeVirt, as Kubernetes)",
                                clip(value)
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// `validatePodAffinityTerm`.
fn pod_affinity_term(out: &mut Out, at: &str, term: &Value) {
    if !set(term) {
        return;
    }
    label_selector(out, &format!("{at}.labelSelector"), &term["labelSelector"]);
    label_selector(
        out,
        &format!("{at}.namespaceSelector"),
        &term["namespaceSelector"],
    );
    for (n, namespace) in list(&term["namespaces"]).iter().enumerate() {
        if let Some(namespace) = namespace.as_str()
            && !is_dns1123_label(namespace)
        {
            out.add(
                format!("{at}.namespaces[{n}]"),
                format!(
                    "{} is not a valid namespace name (KubeVirt, as Kubernetes)",
                    clip(namespace)
                ),
            );
        }
    }
    if let Some(key) = term["topologyKey"].as_str() {
        if key.is_empty() {
            out.add(
                format!("{at}.topologyKey"),
                "topologyKey can not be empty (KubeVirt, as Kubernetes)",
            );
        } else if !is_qualified_name(key) {
            out.add(
                format!("{at}.topologyKey"),
                format!(
                    "topologyKey {} is not a valid label name (KubeVirt)",
                    clip(key)
                ),
            );
        }
    }
}

/// `ValidateLabelSelector` with the default options.
fn label_selector(out: &mut Out, at: &str, selector: &Value) {
    if !set(selector) {
        return;
    }
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (key, value) in labels {
            let value_ok = value.as_str().is_none_or(is_label_value);
            if !is_qualified_name(key) || !value_ok {
                out.add(
                    format!("{at}.matchLabels"),
                    format!(
                        "{}: not a valid label key or value (KubeVirt, as Kubernetes)",
                        clip(key)
                    ),
                );
            }
        }
    }
    for (e, expression) in list(&selector["matchExpressions"]).iter().enumerate() {
        let at = format!("{at}.matchExpressions[{e}]");
        let values = list(&expression["values"]);
        match expression["operator"].as_str() {
            Some("In" | "NotIn") if values.is_empty() => out.add(
                format!("{at}.values"),
                "values must be specified when `operator` is 'In' or 'NotIn' (KubeVirt, as Kubernetes)",
            ),
            Some("Exists" | "DoesNotExist") if !values.is_empty() => out.add(
                format!("{at}.values"),
                "values may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            Some("In" | "NotIn" | "Exists" | "DoesNotExist") => {}
            Some(other) => out.add(
                format!("{at}.operator"),
                format!("{} is not a valid selector operator; use In, NotIn, Exists or DoesNotExist", clip(other)),
            ),
            None => {}
        }
        if let Some(key) = expression["key"].as_str()
            && !is_qualified_name(key)
        {
            out.add(
                format!("{at}.key"),
                format!(
                    "key {} is not a valid label name (KubeVirt, as Kubernetes)",
                    clip(key)
                ),
            );
        }
        for (v, value) in values.iter().enumerate() {
            if let Some(value) = value.as_str()
                && !is_label_value(value)
            {
                out.add(
                    format!("{at}.values[{v}]"),
                    format!(
                        "{} is not a valid label value (KubeVirt, as Kubernetes)",
                        clip(value)
                    ),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cpu_memory

/// CPU topology, dedicated CPUs, CPU features, NUMA and realtime, hugepages, memory quantities
/// and the memory-hotplug bounds, as KubeVirt judges them after its defaults.
pub fn cpu_memory(vm: &Value) -> Vec<Refusal> {
    let mut out = Out::default();
    let spec = template_spec(vm);
    let domain = &spec["domain"];
    let cpu = &domain["cpu"];
    let memory = &domain["memory"];
    let resources = &domain["resources"];
    let instancetype = set(&vm["spec"]["instancetype"]);
    let derived_ok = !shaped_elsewhere(vm);

    let requests_memory = Quantity::of(&resources["requests"]["memory"]);
    let limits_memory = Quantity::of(&resources["limits"]["memory"]);
    let written_requests_cpu = Quantity::of(&resources["requests"]["cpu"]);
    let limits_cpu = Quantity::of(&resources["limits"]["cpu"]);

    // Quantities as written.
    let r = format!("{D}.resources");
    if let Quantity::Is(n) = requests_memory {
        if n.value() < 0 {
            out.add(
                format!("{r}.requests.memory"),
                "memory request must be greater than or equal to 0 (KubeVirt)",
            );
        } else if n.0 > 0 && n < Nanos(1_000_000 * NANO) {
            out.add(
                format!("{r}.requests.memory"),
                "memory request must be greater than or equal to 1M (KubeVirt); a bare number is bytes: 1Gi",
            );
        }
    }
    if limits_memory.value() < 0 {
        out.add(
            format!("{r}.limits.memory"),
            "memory limit must be greater than or equal to 0 (KubeVirt)",
        );
    }
    for (field, quantity) in [("requests", written_requests_cpu), ("limits", limits_cpu)] {
        if quantity.nanos().milli() < 0 {
            out.add(
                format!("{r}.{field}.cpu"),
                format!("cpu {field} must be greater than or equal to 0 (KubeVirt)"),
            );
        }
    }

    for (f, feature) in list(&cpu["features"]).iter().enumerate() {
        if let Some(policy) = feature["policy"].as_str()
            && !matches!(
                policy,
                "" | "force" | "require" | "optional" | "disable" | "forbid"
            )
        {
            out.add(
                format!("{D}.cpu.features[{f}].policy"),
                format!(
                    "CPU feature policy {} is not supported; use force, require, optional, disable or forbid",
                    clip(policy)
                ),
            );
        }
    }

    let dedicated = on(&cpu["dedicatedCpuPlacement"]);
    let passthrough = set(&cpu["numa"]["guestMappingPassthrough"]);
    let hugepages = &memory["hugepages"];
    if !instancetype {
        if on(&cpu["isolateEmulatorThread"]) && !dedicated {
            out.add(
                format!("{D}.cpu.isolateEmulatorThread"),
                "IsolateEmulatorThread should be only set in combination with DedicatedCPUPlacement",
            );
        }
        if passthrough && !dedicated {
            out.add(
                format!("{D}.cpu.numa.guestMappingPassthrough"),
                "NUMA guestMappingPassthrough needs cpu.dedicatedCpuPlacement: true (KubeVirt)",
            );
        }
        if passthrough && !set(hugepages) {
            out.add(
                format!("{D}.cpu.numa.guestMappingPassthrough"),
                "NUMA guestMappingPassthrough needs memory.hugepages (KubeVirt)",
            );
        }
        if set(&cpu["realtime"]) {
            if !dedicated {
                out.add(
                    format!("{D}.cpu.dedicatedCpuPlacement"),
                    "cpu.realtime needs cpu.dedicatedCpuPlacement: true (KubeVirt)",
                );
            }
            if !passthrough {
                out.add(
                    format!("{D}.cpu.numa.guestMappingPassthrough"),
                    "cpu.realtime needs cpu.numa.guestMappingPassthrough (KubeVirt)",
                );
            }
        }
    }

    // The hugepage size is parsed whatever else the VM says.
    let mut page = None;
    if set(hugepages) {
        let size = &hugepages["pageSize"];
        if size.is_null() || size.is_string() {
            match parse_quantity(text(size)) {
                Parsed::Malformed => out.add(
                    format!("{D}.memory.hugepages.pageSize"),
                    format!(
                        "hugepages pageSize '{}' is not a quantity (KubeVirt); use 2Mi or 1Gi",
                        clip(text(size))
                    ),
                ),
                Parsed::Ok(n) => page = Some(n),
                Parsed::Unsure => {}
            }
        }
    }

    let quantities = [
        requests_memory,
        limits_memory,
        written_requests_cpu,
        limits_cpu,
    ];
    let guest_written = Quantity::of(&memory["guest"]);
    let max_guest = Quantity::of(&memory["maxGuest"]);
    if !derived_ok
        || quantities.contains(&Quantity::Bad)
        || guest_written == Quantity::Bad
        || max_guest == Quantity::Bad
    {
        return out.0;
    }

    // KubeVirt's defaults before validation: a cpu limit alone is also the request; the guest
    // memory is memory.guest, else the memory request, limit or hugepage size; a VM without a
    // topology gets sockets from its cpu limit or request.
    let requests_cpu = if written_requests_cpu.is_zero() && !limits_cpu.is_zero() {
        limits_cpu
    } else {
        written_requests_cpu
    };
    let guest = match guest_written {
        Quantity::Is(n) => Some(n),
        _ if !requests_memory.is_zero() => Some(requests_memory.nanos()),
        _ if !limits_memory.is_zero() => Some(limits_memory.nanos()),
        _ => page,
    };
    let (mut sockets, mut cores, mut threads) = (
        i128::from(uint(&cpu["sockets"])),
        i128::from(uint(&cpu["cores"])),
        i128::from(uint(&cpu["threads"])),
    );
    if sockets == 0 && cores == 0 && threads == 0 {
        sockets = match (limits_cpu, requests_cpu) {
            (Quantity::Is(n), _) | (Quantity::Absent, Quantity::Is(n)) => n.value(),
            _ => 1,
        };
        cores = 1;
        threads = 1;
    }
    let vcpus = [sockets, threads]
        .into_iter()
        .fold(cores, |acc, n| match (acc, n) {
            (_, 0) => acc,
            (0, n) => n,
            (acc, n) => acc.saturating_mul(n),
        });

    let max_sockets = i128::from(uint(&cpu["maxSockets"]));
    if max_sockets != 0 && sockets > max_sockets {
        out.add(
            format!("{D}.cpu.sockets"),
            format!(
                "{sockets} sockets is greater than the maximum sockets allowed, maxSockets {max_sockets} (KubeVirt)"
            ),
        );
    }

    if dedicated {
        let (request, limit) = (requests_cpu.nanos(), limits_cpu.nanos());
        for (field, q) in [("requests", request), ("limits", limit)] {
            if q.value() > 0 && q.value() * 1000 != q.milli() {
                out.add(
                    format!("{r}.{field}.cpu"),
                    format!(
                        "with dedicatedCpuPlacement, cpu {field} must be an integer (KubeVirt)"
                    ),
                );
            }
        }
        let (req_mem, lim_mem) = (requests_memory.value(), limits_memory.value());
        if req_mem > 0 && lim_mem > 0 && req_mem != lim_mem {
            out.add(
                format!("{r}.requests.memory"),
                "with dedicatedCpuPlacement, memory requests must be equal to limits (KubeVirt)",
            );
        }
        let (req, lim) = (request.value(), limit.value());
        if req > 0 && lim > 0 && req != lim {
            out.add(
                format!("{D}.cpu.dedicatedCpuPlacement"),
                "requests.cpu and limits.cpu must be equal when dedicatedCpuPlacement is true (KubeVirt)",
            );
        }
        if (req > 0 || lim > 0) && vcpus > 0 && req != vcpus && lim != vcpus {
            out.add(
                format!("{D}.cpu.dedicatedCpuPlacement"),
                format!(
                    "cpu {} differs from the {vcpus} vCPUs of cores/sockets/threads; set one of them (KubeVirt)",
                    if req > 0 { req } else { lim }
                ),
            );
        }
        if threads > 2 {
            out.add(
                format!("{D}.cpu.dedicatedCpuPlacement"),
                format!(
                    "not more than two threads with dedicatedCpuPlacement (KubeVirt; got {threads})"
                ),
            );
        }
    }

    if page.is_some_and(|p| p.0 == 0) {
        out.add(
            format!("{D}.memory.hugepages.pageSize"),
            "hugepages pageSize is zero, which virt-api fails on (KubeVirt); use 2Mi or 1Gi",
        );
    }
    if let Some(page) = page.filter(|p| p.value() > 0) {
        let mut vm_memory = requests_memory.value();
        if vm_memory == 0 {
            vm_memory = guest.unwrap_or(Nanos(0)).value();
        }
        if vm_memory == 0 {
            vm_memory = limits_memory.value();
        }
        let size = page.value();
        if vm_memory > 0 && vm_memory < size {
            out.add(
                format!("{r}.requests.memory"),
                "memory must be equal to or larger than the hugepages page size (KubeVirt)",
            );
        } else if vm_memory > 0 && vm_memory % size != 0 {
            out.add(
                format!("{r}.requests.memory"),
                "memory is not a multiple of the hugepages page size (KubeVirt)",
            );
        }
    }

    if let Quantity::Is(max) = max_guest
        && let Some(problem) = hotplug_problem(spec, guest, max)
    {
        out.add(
            format!("{D}.memory.guest"),
            format!("memory.maxGuest set (memory hotplug, LiveUpdate): {problem} (KubeVirt)"),
        );
    }
    out.0
}

/// `ValidateLiveUpdateMemory`: the first reason memory hotplug refuses the VM.
fn hotplug_problem(spec: &Value, guest: Option<Nanos>, max: Nanos) -> Option<&'static str> {
    const MI2: i128 = 2 << 20;
    const GI: i128 = 1 << 30;
    let domain = &spec["domain"];
    let cpu = &domain["cpu"];
    if set(&cpu["realtime"]) {
        return Some("not compatible with realtime VMs");
    }
    if set(&cpu["numa"]["guestMappingPassthrough"]) {
        return Some("not compatible with guest mapping passthrough");
    }
    if set(&domain["launchSecurity"]) {
        return Some("not compatible with encrypted VMs");
    }
    let alignment = if domain["memory"]["hugepages"]["pageSize"].as_str() == Some("1Gi") {
        GI
    } else {
        MI2
    };
    let Some(guest) = guest else {
        return Some("Guest memory must be configured");
    };
    if guest > max {
        return Some("Guest memory is greater than the configured maxGuest memory");
    }
    if guest.value() % alignment != 0 {
        return Some(if alignment == GI {
            "Guest memory must be 1Gi aligned"
        } else {
            "Guest memory must be 2Mi aligned"
        });
    }
    if max.value() % alignment != 0 {
        return Some(if alignment == GI {
            "MaxGuest must be 1Gi aligned"
        } else {
            "MaxGuest must be 2Mi aligned"
        });
    }
    if let Some(arch) = spec["architecture"].as_str()
        && !arch.is_empty()
        && arch != "amd64"
    {
        return Some("Memory hotplug is only available for x86_64 VMs");
    }
    if guest.value() < GI {
        return Some("only available for VMs with at least 1Gi of guest memory");
    }
    None
}

// ---------------------------------------------------------------------------------------------
// cloud_init

/// cloudInitNoCloud / cloudInitConfigDrive data sources and sizes, and access credentials, as
/// `validateVolumes` and `validateAccessCredentials` refuse them.
pub fn cloud_init(vm: &Value) -> Vec<Refusal> {
    let mut out = Out::default();
    let spec = template_spec(vm);
    let volumes = list(&spec["volumes"]);

    for (i, volume) in volumes.iter().enumerate() {
        let kind = if set(&volume["cloudInitNoCloud"]) {
            "cloudInitNoCloud"
        } else if set(&volume["cloudInitConfigDrive"]) {
            "cloudInitConfigDrive"
        } else {
            continue;
        };
        let source = &volume[kind];
        let at = format!("{T}.volumes[{i}].{kind}");

        let user = data_source(
            &mut out,
            &at,
            source,
            "userData",
            "userDataBase64",
            "secretRef",
        );
        let network = data_source(
            &mut out,
            &at,
            source,
            "networkData",
            "networkDataBase64",
            "networkDataSecretRef",
        );
        for (what, data, words) in [
            ("user-data", &user, "only one userdatasource"),
            ("network-data", &network, "only one networkdata source"),
        ] {
            if data.sources > 1 {
                out.add(
                    &at,
                    format!(
                        "{kind} has more than one {what} source (KubeVirt: must have {words} set)"
                    ),
                );
            }
        }
        for (data, secret) in [(&user, "secretRef"), (&network, "networkDataSecretRef")] {
            if data.length.is_some_and(|n| n > 2048) {
                out.add(
                    &at,
                    format!(
                        "{kind} {} exceeds 2048 byte limit (KubeVirt); use {secret}",
                        data.what
                    ),
                );
            }
        }
        if user.sources == 0 && network.sources == 0 {
            out.add(
                &at,
                format!("{kind} has no user data and no network data (KubeVirt: must have at least one set)"),
            );
        }
    }

    access_credentials(&mut out, spec, volumes);
    out.0
}

struct DataSource {
    what: &'static str,
    sources: usize,
    /// The inline data's size, where known.
    length: Option<usize>,
}

fn data_source(
    out: &mut Out,
    at: &str,
    source: &Value,
    inline: &'static str,
    encoded: &'static str,
    secret: &str,
) -> DataSource {
    let what = if inline == "userData" {
        "userdata"
    } else {
        "networkdata"
    };
    let mut data = DataSource {
        what,
        sources: 0,
        length: None,
    };
    if !text(&source[secret]["name"]).is_empty() {
        data.sources += 1;
    }
    let base64 = text(&source[encoded]);
    if !base64.is_empty() {
        data.sources += 1;
        data.length = std_base64_len(base64);
        if data.length.is_none() {
            out.add(
                format!("{at}.{encoded}"),
                format!(
                    "{encoded} is not a valid base64 value (KubeVirt); encode it, or use {inline}"
                ),
            );
        }
    }
    let plain = text(&source[inline]);
    if !plain.is_empty() {
        data.sources += 1;
        data.length = Some(plain.len());
    }
    data
}

/// `validateAccessCredentials`.
fn access_credentials(out: &mut Out, spec: &Value, volumes: &[Value]) {
    let no_cloud = volumes.iter().any(|v| set(&v["cloudInitNoCloud"]));
    let config_drive = volumes.iter().any(|v| set(&v["cloudInitConfigDrive"]));
    for (c, credential) in list(&spec["accessCredentials"]).iter().enumerate() {
        let at = format!("{T}.accessCredentials[{c}]");
        let ssh = &credential["sshPublicKey"];
        let password = &credential["userPassword"];
        if set(ssh) {
            let method = &ssh["propagationMethod"];
            let mut methods = 0;
            if set(&method["noCloud"]) {
                methods += 1;
                if !no_cloud {
                    out.add(
                        format!("{at}.sshPublicKey.propagationMethod"),
                        "noCloud propagation requires a cloudInitNoCloud volume to exist (KubeVirt)",
                    );
                }
            }
            if set(&method["configDrive"]) {
                methods += 1;
                if !config_drive {
                    out.add(
                        format!("{at}.sshPublicKey.propagationMethod"),
                        "configDrive propagation requires a cloudInitConfigDrive volume to exist (KubeVirt)",
                    );
                }
            }
            let agent = &method["qemuGuestAgent"];
            if set(agent) {
                methods += 1;
                if list(&agent["users"]).is_empty() {
                    out.add(
                        format!("{at}.sshPublicKey.propagationMethod.qemuGuestAgent.users"),
                        "qemuGuestAgent propagation requires at least one user in the users list (KubeVirt)",
                    );
                }
            }
            if !set(&ssh["source"]["secret"]) {
                out.add(
                    format!("{at}.sshPublicKey.source"),
                    "sshPublicKey must have exactly one source set (KubeVirt): source.secret",
                );
            }
            if methods != 1 {
                out.add(
                    format!("{at}.sshPublicKey.propagationMethod"),
                    "sshPublicKey must have exactly one propagationMethod set (KubeVirt)",
                );
            }
        }
        if set(password) {
            if !set(&password["source"]["secret"]) {
                out.add(
                    format!("{at}.userPassword.source"),
                    "userPassword must have exactly one source set (KubeVirt): source.secret",
                );
            }
            if !set(&password["propagationMethod"]["qemuGuestAgent"]) {
                out.add(
                    format!("{at}.userPassword.propagationMethod"),
                    "userPassword must have exactly one propagationMethod set (KubeVirt): qemuGuestAgent",
                );
            }
        }
        if set(ssh) == set(password) {
            out.add(
                &at,
                "must have exactly one access credential type set (KubeVirt): sshPublicKey or userPassword",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Check = fn(&Value) -> Vec<Refusal>;

    const ALL: [(&str, Check); 7] = [
        ("devices", devices),
        ("firmware", firmware),
        ("networks", networks),
        ("names", names),
        ("scheduling", scheduling),
        ("cpu_memory", cpu_memory),
        ("cloud_init", cloud_init),
    ];

    const USER_DATA: &str = "#cloud-config\npassword: fedora\nchpasswd: { expire: False }\n";

    /// The survey's base VM, which KubeVirt v1.6.6 admits.
    fn base() -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": "m-base"},
            "spec": {
                "runStrategy": "Always",
                "template": {
                    "metadata": {"labels": {"kubevirt.io/domain": "m-base"}},
                    "spec": {
                        "domain": {
                            "cpu": {"cores": 1},
                            "resources": {"requests": {"memory": "1Gi"}},
                            "devices": {
                                "disks": [
                                    {"name": "rootdisk", "bootOrder": 1, "disk": {"bus": "virtio"}},
                                    {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}
                                ],
                                "interfaces": [{"name": "default", "masquerade": {}}]
                            }
                        },
                        "networks": [{"name": "default", "pod": {}}],
                        "volumes": [
                            {"name": "rootdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}},
                            {"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": USER_DATA}}
                        ]
                    }
                }
            }
        })
    }

    fn with(edit: impl FnOnce(&mut Value)) -> Value {
        let mut vm = base();
        edit(&mut vm);
        vm
    }

    fn spec(vm: &mut Value) -> &mut Value {
        &mut vm["spec"]["template"]["spec"]
    }

    fn every(vm: &Value) -> Vec<(&'static str, Refusal)> {
        let mut found = Vec::new();
        for (name, check) in ALL {
            for refusal in check(vm) {
                assert!(
                    refusal.message.chars().count() <= 120 && !refusal.message.contains('\n'),
                    "{name}: message too long or not one line: {}",
                    refusal.message
                );
                found.push((name, refusal));
            }
        }
        found
    }

    /// `check` refuses `vm` at `path`, and no other function refuses it.
    #[track_caller]
    fn refused(check: &str, vm: &Value, path: &str) {
        let found = every(vm);
        assert!(
            found
                .iter()
                .any(|(name, r)| *name == check && r.path == path),
            "expected {check} at {path}, got {found:#?}"
        );
        assert!(
            found.iter().all(|(name, _)| *name == check),
            "only {check} expected: {found:#?}"
        );
    }

    #[track_caller]
    fn clean(vm: &Value) {
        let found = every(vm);
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn the_base_vm_is_clean() {
        clean(&base());
        // The rule tests' valid VM: guest memory, requests below limits.
        clean(&with(|vm| {
            spec(vm)["domain"]["memory"] = json!({"guest": "1Gi"});
            spec(vm)["domain"]["resources"] = json!({"requests": {"memory": "1Gi", "cpu": "1"},
                "limits": {"memory": "2Gi", "cpu": "2"}});
        }));
    }

    /// A VM using much of what KubeVirt admits: EFI with SMM, hugepages, dedicated CPUs, a
    /// Multus bridge, forwarded ports, devices, ACPI, probes, affinity, access credentials.
    #[test]
    fn a_full_valid_vm_is_clean() {
        let vm = with(|vm| {
            let s = spec(vm);
            s["domain"]["firmware"] = json!({
                "bootloader": {"efi": {"secureBoot": true}},
                "acpi": {"slicNameRef": "slic"}
            });
            s["domain"]["features"] = json!({"smm": {}, "acpi": {}});
            s["domain"]["cpu"] = json!({
                "cores": 2, "dedicatedCpuPlacement": true, "isolateEmulatorThread": true,
                "features": [{"name": "vmx", "policy": "require"}, {"name": "pcid"}]
            });
            s["domain"]["resources"] = json!({
                "requests": {"cpu": "2", "memory": "1Gi"},
                "limits": {"cpu": "2", "memory": "1Gi"}
            });
            s["domain"]["memory"] = json!({"guest": "1Gi", "hugepages": {"pageSize": "2Mi"}});
            s["domain"]["ioThreadsPolicy"] = json!("auto");
            let devices = &mut s["domain"]["devices"];
            devices["disks"][0]["serial"] = json!("root-disk_1.0+a");
            devices["disks"][0]["cache"] = json!("none");
            devices["disks"][0]["io"] = json!("native");
            devices["disks"][0]["dedicatedIOThread"] = json!(true);
            devices["disks"][0]["disk"]["pciAddress"] = json!("0000:00:0a.0");
            devices["disks"][0]["blockSize"] =
                json!({"custom": {"logical": 512, "physical": 4096}});
            devices["disks"][1] = json!({"name": "cloudinitdisk", "cdrom": {"bus": "sata"}});
            devices["disks"]
                .as_array_mut()
                .unwrap()
                .extend([json!({"name": "data", "lun": {"bus": "scsi"}, "errorPolicy": "report"})]);
            devices["interfaces"][0]["ports"] =
                json!([{"name": "ssh", "port": 22, "protocol": "TCP"}, {"port": 80}]);
            devices["interfaces"][0]["model"] = json!("virtio");
            devices["interfaces"][0]["macAddress"] = json!("02:00:00:00:00:01");
            devices["interfaces"].as_array_mut().unwrap().push(
                json!({"name": "vlan10", "bridge": {}, "macAddress": "02-00-00-00-00-02",
                             "pciAddress": "0000:81:00.1", "state": "up"}),
            );
            devices["inputs"] = json!([{"name": "tablet", "type": "tablet", "bus": "usb"}]);
            devices["sound"] = json!({"name": "audio", "model": "ich9"});
            s["networks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "vlan10", "multus": {"networkName": "vlan10"}}));
            s["volumes"].as_array_mut().unwrap().extend([
                json!({"name": "data", "persistentVolumeClaim": {"claimName": "data"}}),
                json!({"name": "slic", "secret": {"secretName": "slic-table"}}),
            ]);
            s["volumes"][1]["cloudInitNoCloud"]["networkDataBase64"] = json!("dmVyc2lvbjogMgo=");
            s["hostname"] = json!("web-01");
            s["subdomain"] = json!("web.example");
            s["evictionStrategy"] = json!("LiveMigrate");
            s["readinessProbe"] = json!({"httpGet": {"port": 80}});
            s["livenessProbe"] = json!({"guestAgentPing": {}});
            s["dnsPolicy"] = json!("None");
            s["dnsConfig"] =
                json!({"nameservers": ["10.0.0.10", "fd00::a"], "searches": ["example.com"]});
            s["affinity"] = json!({
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]},
                                              {"key": "gpu", "operator": "Exists"}]}
                    ]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 50, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["worker-1"]}]}}
                    ]
                },
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app": "web"}}}}
                ]}
            });
            s["topologySpreadConstraints"] = json!([
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"},
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
            ]);
            s["accessCredentials"] = json!([
                {"sshPublicKey": {"source": {"secret": {"secretName": "keys"}},
                                  "propagationMethod": {"noCloud": {}}}},
                {"userPassword": {"source": {"secret": {"secretName": "pw"}},
                                  "propagationMethod": {"qemuGuestAgent": {}}}}
            ]);
        });
        clean(&vm);
    }

    #[test]
    fn other_valid_shapes_are_clean() {
        // EFI without Secure Boot needs no SMM; BIOS alone; memory hotplug within bounds.
        clean(&with(|vm| {
            let d = &mut spec(vm)["domain"];
            d["firmware"] = json!({"bootloader": {"efi": {"secureBoot": false}}});
            d["memory"] = json!({"guest": "2Gi", "maxGuest": "8Gi"});
            d["resources"] = json!({});
            d["cpu"] = json!({"sockets": 2, "maxSockets": 4, "cores": 1});
        }));
        clean(&with(|vm| {
            spec(vm)["domain"]["firmware"] = json!({"bootloader": {"bios": {"useSerial": true}}});
        }));
        // Dedicated CPUs from a limit alone (KubeVirt copies it to the request), and 1Gi pages.
        clean(&with(|vm| {
            let d = &mut spec(vm)["domain"];
            d["cpu"] = json!({"dedicatedCpuPlacement": true});
            d["resources"] = json!({"limits": {"cpu": 4, "memory": "4Gi"}});
            d["memory"] = json!({"hugepages": {"pageSize": "1Gi"}});
        }));
        // Only network data; user data from a Secret; config drive.
        clean(&with(|vm| {
            spec(vm)["volumes"][1] = json!({"name": "cloudinitdisk",
                "cloudInitConfigDrive": {"secretRef": {"name": "ud"}, "networkData": "version: 2\n"}});
        }));
        // No interfaces and no networks: KubeVirt attaches the pod network, so an httpGet
        // probe is fine.
        clean(&with(|vm| {
            let s = spec(vm);
            s["domain"]["devices"]["interfaces"] = json!([]);
            s["networks"] = json!([]);
            s["readinessProbe"] = json!({"tcpSocket": {"port": 22}});
        }));
        // A preference may bring SMM; an instancetype brings CPU and memory.
        clean(&with(|vm| {
            vm["spec"]["preference"] = json!({"name": "windows.11"});
            spec(vm)["domain"]["firmware"] = json!({"bootloader": {"efi": {}}});
        }));
        // A volume without a disk gets one; its DNS-label name is fine.
        clean(&with(|vm| {
            spec(vm)["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "scratch", "emptyDisk": {"capacity": "1Gi"}}));
        }));
    }

    #[test]
    fn nothing_panics_on_odd_shapes() {
        for odd in [
            json!({"spec": {"template": {"spec": {"domain": {"cpu": {"cores": u64::MAX, "sockets": u64::MAX,
                "threads": u64::MAX, "maxSockets": 1, "dedicatedCpuPlacement": true},
                "resources": {"requests": {"cpu": "9223372036854775807", "memory": "1e18"}, "limits": {"cpu": 1e300}},
                "memory": {"guest": "-9e18", "maxGuest": "8Ei", "hugepages": {"pageSize": "1e-30"}}}}}}}),
            json!(null),
            json!([]),
            json!("vm"),
            json!({"spec": []}),
            json!({"spec": {"template": {"spec": {"domain": [], "volumes": {}, "networks": "x"}}}}),
            json!({"spec": {"template": {"spec": {"domain": {"devices": {"disks": [1, null, {"lun": 3}]},
                "cpu": {"sockets": -1, "maxSockets": "2"}, "memory": {"hugepages": {"pageSize": 2}},
                "resources": {"requests": {"memory": {}, "cpu": [1]}}}}}}}),
            json!({"spec": {"template": {"spec": {"volumes": [{"cloudInitNoCloud": {"userDataBase64": 5}}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}}}}}),
        ] {
            let _ = every(&odd);
        }
    }

    // ----- devices

    #[test]
    fn devices_mirror_the_survey() {
        refused(
            "devices",
            &with(|vm| spec(vm)["domain"]["devices"]["disks"][0]["cdrom"] = json!({"bus": "sata"})),
            "spec.template.spec.domain.devices.disks[0]",
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["disks"][1] =
                    json!({"name": "cloudinitdisk", "cdrom": {"bus": "virtio"}})
            }),
            "spec.template.spec.domain.devices.disks[1].cdrom.bus",
        );
        refused(
            "devices",
            &with(|vm| spec(vm)["domain"]["devices"]["disks"][0]["disk"]["bus"] = json!("ide")),
            "spec.template.spec.domain.devices.disks[0].disk.bus",
        );
        refused(
            "devices",
            &with(|vm| spec(vm)["domain"]["devices"]["disks"][0]["disk"]["bus"] = json!("virtIO")),
            "spec.template.spec.domain.devices.disks[0].disk.bus",
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["disks"][0] =
                    json!({"name": "rootdisk", "bootOrder": 1, "lun": {}})
            }),
            "spec.template.spec.domain.devices.disks[0].lun",
        );
        refused(
            "devices",
            &with(|vm| spec(vm)["domain"]["devices"]["disks"][0]["cache"] = json!("write-back")),
            "spec.template.spec.domain.devices.disks[0].cache",
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["disks"][0]["serial"] = json!("root disk #1/fedora")
            }),
            "spec.template.spec.domain.devices.disks[0].serial",
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["interfaces"][0]["model"] = json!("virtio-net")
            }),
            "spec.template.spec.domain.devices.interfaces[0].model",
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["interfaces"][0]["macAddress"] =
                    json!("02:00:00:ab:cd")
            }),
            "spec.template.spec.domain.devices.interfaces[0].macAddress",
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["inputs"] =
                    json!([{"name": "tablet", "type": "tablet", "bus": "ps2"}])
            }),
            "spec.template.spec.domain.devices.inputs[0].bus",
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["sound"] = json!({"name": "audio", "model": "hda"})
            }),
            "spec.template.spec.domain.devices.sound.model",
        );
    }

    #[test]
    fn devices_mirror_the_rest_of_virt_api() {
        let disk0 = "spec.template.spec.domain.devices.disks[0]";
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["disks"][0]["disk"] =
                    json!({"bus": "sata", "readonly": true})
            }),
            &format!("{disk0}.disk.bus"),
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["disks"][0]["disk"]["bus"] = json!("sata");
                spec(vm)["domain"]["devices"]["disks"][0]["dedicatedIOThread"] = json!(true);
            }),
            disk0,
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["disks"][0]["disk"]["pciAddress"] = json!("00:0a.0")
            }),
            &format!("{disk0}.disk.pciAddress"),
        );
        refused(
            "devices",
            &with(|vm| spec(vm)["domain"]["devices"]["disks"][0]["io"] = json!("io_uring")),
            &format!("{disk0}.io"),
        );
        refused(
            "devices",
            &with(|vm| spec(vm)["domain"]["devices"]["disks"][0]["errorPolicy"] = json!("retry")),
            &format!("{disk0}.errorPolicy"),
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["disks"][0]["blockSize"] =
                    json!({"custom": {"logical": 512, "physical": 3000}})
            }),
            &format!("{disk0}.blockSize.custom.physical"),
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["inputs"] =
                    json!([{"name": "kbd", "type": "keyboard"}])
            }),
            "spec.template.spec.domain.devices.inputs[0].type",
        );
        refused(
            "devices",
            &with(|vm| spec(vm)["domain"]["devices"]["sound"] = json!({"model": "ich9"})),
            "spec.template.spec.domain.devices.sound.name",
        );
        refused(
            "devices",
            &with(|vm| spec(vm)["domain"]["ioThreadsPolicy"] = json!("supplementalPool")),
            "spec.template.spec.domain.ioThreads.count",
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["volumes"][0]["containerDisk"]["path"] = json!("disk/fedora.qcow2")
            }),
            "spec.template.spec.volumes[0].containerDisk.path",
        );
        refused(
            "devices",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["gpus"] = json!([
                    {"name": "g1", "deviceName": "nvidia.com/A", "virtualGPUOptions": {"display": {}}},
                    {"name": "g2", "deviceName": "nvidia.com/A", "virtualGPUOptions": {"display": {"ramFB": {"enabled": true}}}}
                ])
            }),
            "spec.template.spec.domain.devices.gpus",
        );
        // sata cdroms may be read-only; a sata disk that is not is fine.
        clean(&with(|vm| {
            spec(vm)["domain"]["devices"]["disks"][0]["disk"]["bus"] = json!("sata")
        }));
        // A preference may fill in the bus of a disk with a PCI address.
        clean(&with(|vm| {
            vm["spec"]["preference"] = json!({"name": "p"});
            spec(vm)["domain"]["devices"]["disks"][0]["disk"] =
                json!({"pciAddress": "0000:00:0a.0"});
        }));
    }

    // ----- firmware

    #[test]
    fn firmware_mirrors_the_survey() {
        for (firmware, features) in [
            (
                json!({"bootloader": {"efi": {"secureBoot": true}}}),
                json!({"smm": {"enabled": false}}),
            ),
            (
                json!({"bootloader": {"efi": {"secureBoot": true}}}),
                json!(null),
            ),
            (json!({"bootloader": {"efi": {}}}), json!(null)),
        ] {
            refused(
                "firmware",
                &with(|vm| {
                    spec(vm)["domain"]["firmware"] = firmware;
                    spec(vm)["domain"]["features"] = features;
                }),
                "spec.template.spec.domain.firmware.bootloader.efi.secureBoot",
            );
        }
        // An instancetype has no features: SMM is still off.
        refused(
            "firmware",
            &with(|vm| {
                vm["spec"]["instancetype"] = json!({"name": "u1.medium"});
                spec(vm)["domain"]["firmware"] = json!({"bootloader": {"efi": {}}});
            }),
            "spec.template.spec.domain.firmware.bootloader.efi.secureBoot",
        );
        refused(
            "firmware",
            &with(|vm| {
                spec(vm)["domain"]["firmware"] = json!({"bootloader": {"bios": {}, "efi": {}}})
            }),
            "spec.template.spec.domain.firmware.bootloader",
        );
        refused(
            "firmware",
            &with(|vm| spec(vm)["domain"]["firmware"] = json!({"acpi": {}})),
            "spec.template.spec.domain.firmware.acpi",
        );
        refused(
            "firmware",
            &with(|vm| {
                spec(vm)["domain"]["firmware"] = json!({"kernelBoot": {"kernelArgs": "console=ttyS0",
                "container": {"kernelPath": "/boot/vmlinuz"}}})
            }),
            "spec.template.spec.domain.firmware.kernelBoot.container.image",
        );
        refused(
            "firmware",
            &with(|vm| {
                spec(vm)["domain"]["firmware"] = json!({"acpi": {"msdmNameRef": "rootdisk"}})
            }),
            "spec.template.spec.domain.firmware.acpi.msdmNameRef",
        );
        refused(
            "firmware",
            &with(|vm| {
                spec(vm)["domain"]["firmware"] = json!({"kernelBoot": {"kernelArgs": "quiet"}})
            }),
            "spec.template.spec.domain.firmware.kernelBoot.kernelArgs",
        );
        refused(
            "firmware",
            &with(|vm| {
                spec(vm)["domain"]["firmware"] = json!({"kernelBoot": {"container": {
                "image": "quay.io/k:1", "kernelPath": "boot/../vmlinuz"}}})
            }),
            "spec.template.spec.domain.firmware.kernelBoot.container.kernelPath",
        );
        clean(&with(|vm| {
            spec(vm)["domain"]["firmware"] = json!({"kernelBoot": {"kernelArgs": "quiet",
            "container": {"image": "quay.io/k:1", "kernelPath": "/boot/vmlinuz", "initrdPath": "/boot/initrd/"}}})
        }));
    }

    // ----- networks

    #[test]
    fn networks_mirror_the_survey() {
        refused(
            "networks",
            &with(|vm| {
                let s = spec(vm);
                s["networks"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "secondary", "multus": {"networkName": ""}}));
                s["domain"]["devices"]["interfaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "secondary", "bridge": {}}));
            }),
            "spec.template.spec.networks[1].multus.networkName",
        );
        refused(
            "networks",
            &with(|vm| {
                let s = spec(vm);
                s["networks"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "second", "pod": {}}));
                s["domain"]["devices"]["interfaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "second", "masquerade": {}}));
            }),
            "spec.template.spec.networks[1]",
        );
        refused(
            "networks",
            &with(|vm| {
                let s = spec(vm);
                s["networks"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "vlan10", "multus": {"networkName": "vlan10"}}));
                s["domain"]["devices"]["interfaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "vlan10", "masquerade": {}}));
            }),
            "spec.template.spec.domain.devices.interfaces[1].name",
        );
        refused(
            "networks",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["interfaces"][0]["ports"] =
                    json!([{"name": "ssh", "port": 22, "protocol": "tcp"}])
            }),
            "spec.template.spec.domain.devices.interfaces[0].ports[0].protocol",
        );
        refused(
            "networks",
            &with(|vm| spec(vm)["dnsPolicy"] = json!("None")),
            "spec.template.spec.dnsConfig",
        );
    }

    #[test]
    fn networks_mirror_the_rest_of_virt_api() {
        let iface0 = "spec.template.spec.domain.devices.interfaces[0]";
        refused(
            "networks",
            &with(|vm| spec(vm)["networks"][0] = json!({"name": "default"})),
            "spec.template.spec.networks[0]",
        );
        refused(
            "networks",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["interfaces"][0]["macAddress"] =
                    json!("02:00:00:00:00:00")
            }),
            &format!("{iface0}.macAddress"),
        );
        refused(
            "networks",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["interfaces"][0]["binding"] = json!({"name": "passt"})
            }),
            &format!("{iface0}.binding"),
        );
        refused(
            "networks",
            &with(|vm| spec(vm)["domain"]["devices"]["interfaces"][0]["state"] = json!("absent")),
            &format!("{iface0}.state"),
        );
        refused(
            "networks",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["interfaces"][0]["ports"] =
                    json!([{"name": "web", "port": 0}])
            }),
            &format!("{iface0}.ports[0]"),
        );
        refused(
            "networks",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["interfaces"][0]["ports"] =
                    json!([{"name": "Web_Port", "port": 80}])
            }),
            &format!("{iface0}.ports[0].name"),
        );
        refused(
            "networks",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["interfaces"][0]["dhcpOptions"] =
                    json!({"ntpServers": ["fd00::1"]})
            }),
            &format!("{iface0}.dhcpOptions.ntpServers[0]"),
        );
        refused(
            "networks",
            &with(|vm| spec(vm)["dnsConfig"] = json!({"nameservers": ["8.8.8.8", "dns.example"]})),
            "spec.template.spec.dnsConfig.nameservers[1]",
        );
        // Ports on a non-pod network are not validated.
        clean(&with(|vm| {
            let s = spec(vm);
            s["networks"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "vlan10", "multus": {"networkName": "vlan10"}}));
            s["domain"]["devices"]["interfaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "vlan10", "bridge": {},
                "ports": [{"port": 80, "protocol": "http"}]}));
        }));
        // A bridge on the pod network is a cluster setting (allowed by default).
        clean(&with(|vm| {
            spec(vm)["domain"]["devices"]["interfaces"][0] =
                json!({"name": "default", "bridge": {}})
        }));
    }

    // ----- names

    #[test]
    fn names_mirror_the_survey() {
        refused(
            "names",
            &with(|vm| {
                spec(vm)["domain"]["devices"]["disks"][0]["name"] = json!("rootDisk");
                spec(vm)["volumes"][0]["name"] = json!("rootDisk");
            }),
            "spec.template.spec.domain.devices.disks[0].name",
        );
        refused(
            "names",
            &with(|vm| spec(vm)["hostname"] = json!("web_01")),
            "spec.template.spec.hostname",
        );
        refused(
            "names",
            &with(|vm| {
                spec(vm)["volumes"][0] = json!({"name": "rootdisk", "dataVolume": {"name": ""}})
            }),
            "spec.template.spec.volumes[0].dataVolume.name",
        );
        refused(
            "names",
            &with(|vm| {
                spec(vm)["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "app-config", "configMap": {}}));
                spec(vm)["domain"]["devices"]["disks"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "app-config"}));
            }),
            "spec.template.spec.volumes[2].configMap.name",
        );
    }

    #[test]
    fn names_mirror_the_rest_of_virt_api() {
        refused(
            "names",
            &with(|vm| {
                spec(vm)["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "Scratch", "emptyDisk": {"capacity": "1Gi"}}))
            }),
            "spec.template.spec.volumes[2].name",
        );
        refused(
            "names",
            &with(|vm| spec(vm)["subdomain"] = json!("Web")),
            "spec.template.spec.subdomain",
        );
        refused(
            "names",
            &with(|vm| {
                vm["spec"]["template"]["metadata"]["labels"]["kubevirt.io/nodeName"] =
                    json!("worker-1")
            }),
            "spec.template.metadata.labels",
        );
        let vm = with(|vm| {
            let s = spec(vm);
            s["domain"]["devices"]["interfaces"][0]["name"] = json!("eth.0");
            s["networks"][0]["name"] = json!("eth.0");
        });
        refused(
            "names",
            &vm,
            "spec.template.spec.domain.devices.interfaces[0].name",
        );
    }

    // ----- scheduling

    #[test]
    fn scheduling_mirrors_the_survey() {
        refused(
            "scheduling",
            &with(
                |vm| spec(vm)["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}),
            ),
            "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
        );
        refused(
            "scheduling",
            &with(|vm| {
                spec(vm)["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In"}]}]}}})
            }),
            "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values",
        );
        refused(
            "scheduling",
            &with(|vm| {
                spec(vm)["topologySpreadConstraints"] = json!([{"maxSkew": 0, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}])
            }),
            "spec.template.spec.topologySpreadConstraints[0].maxSkew",
        );
        refused(
            "scheduling",
            &with(|vm| spec(vm)["evictionStrategy"] = json!("Migrate")),
            "spec.template.spec.evictionStrategy",
        );
    }

    #[test]
    fn scheduling_mirrors_the_rest_of_virt_api() {
        refused(
            "scheduling",
            &with(|vm| spec(vm)["startStrategy"] = json!("Halted")),
            "spec.template.spec.startStrategy",
        );
        refused(
            "scheduling",
            &with(|vm| {
                spec(vm)["readinessProbe"] =
                    json!({"httpGet": {"port": 80}, "exec": {"command": ["true"]}})
            }),
            "spec.template.spec.readinessProbe",
        );
        refused(
            "scheduling",
            &with(|vm| spec(vm)["livenessProbe"] = json!({"initialDelaySeconds": 5})),
            "spec.template.spec.livenessProbe",
        );
        refused(
            "scheduling",
            &with(|vm| {
                let s = spec(vm);
                s["networks"] = json!([{"name": "default", "multus": {"networkName": "vlan10"}}]);
                s["domain"]["devices"]["interfaces"] = json!([{"name": "default", "bridge": {}}]);
                s["readinessProbe"] = json!({"tcpSocket": {"port": 22}});
            }),
            "spec.template.spec.readinessProbe.tcpSocket",
        );
        refused(
            "scheduling",
            &with(|vm| {
                spec(vm)["affinity"] = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "", "labelSelector": {"matchExpressions": [{"key": "app", "operator": "in", "values": ["web"]}]}}]}})
            }),
            "spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
        );
        refused(
            "scheduling",
            &with(|vm| {
                spec(vm)["affinity"] = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 0, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}]}})
            }),
            "spec.template.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
        );
        refused(
            "scheduling",
            &with(|vm| {
                spec(vm)["topologySpreadConstraints"] = json!([
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
                {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}])
            }),
            "spec.template.spec.topologySpreadConstraints[0]",
        );
    }

    // ----- cpu_memory

    #[test]
    fn cpu_memory_mirrors_the_survey() {
        let d = "spec.template.spec.domain";
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["cpu"] = json!({"cores": 1, "sockets": 4, "maxSockets": 2})
            }),
            &format!("{d}.cpu.sockets"),
        );
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["cpu"] = json!({"dedicatedCpuPlacement": true});
                spec(vm)["domain"]["resources"] = json!({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "4", "memory": "1Gi"}});
            }),
            &format!("{d}.cpu.dedicatedCpuPlacement"),
        );
        let fractional = with(|vm| {
            spec(vm)["domain"]["cpu"] = json!({"dedicatedCpuPlacement": true});
            spec(vm)["domain"]["resources"] = json!({"requests": {"cpu": "1500m", "memory": "1Gi"}, "limits": {"cpu": "1500m", "memory": "1Gi"}});
        });
        refused(
            "cpu_memory",
            &fractional,
            &format!("{d}.resources.requests.cpu"),
        );
        refused(
            "cpu_memory",
            &fractional,
            &format!("{d}.resources.limits.cpu"),
        );
        refused(
            "cpu_memory",
            &with(|vm| spec(vm)["domain"]["cpu"]["isolateEmulatorThread"] = json!(true)),
            &format!("{d}.cpu.isolateEmulatorThread"),
        );
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["cpu"]["features"] =
                    json!([{"name": "vmx", "policy": "enabled"}])
            }),
            &format!("{d}.cpu.features[0].policy"),
        );
        refused(
            "cpu_memory",
            &with(|vm| spec(vm)["domain"]["memory"] = json!({"hugepages": {"pageSize": "3Mi"}})),
            &format!("{d}.resources.requests.memory"),
        );
        refused(
            "cpu_memory",
            &with(|vm| spec(vm)["domain"]["memory"] = json!({"hugepages": {"pageSize": "2MB"}})),
            &format!("{d}.memory.hugepages.pageSize"),
        );
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["memory"] = json!({"hugepages": {"pageSize": "1Gi"}});
                spec(vm)["domain"]["resources"]["requests"]["memory"] = json!("512Mi");
            }),
            &format!("{d}.resources.requests.memory"),
        );
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["memory"] = json!({"guest": "2Gi", "maxGuest": "1Gi"});
                spec(vm)["domain"]["resources"] = json!(null);
            }),
            &format!("{d}.memory.guest"),
        );
        refused(
            "cpu_memory",
            &with(|vm| spec(vm)["domain"]["resources"]["requests"]["memory"] = json!("1024")),
            &format!("{d}.resources.requests.memory"),
        );
        refused(
            "cpu_memory",
            &with(|vm| spec(vm)["domain"]["resources"]["requests"]["memory"] = json!("-1Gi")),
            &format!("{d}.resources.requests.memory"),
        );
        // What the survey saw admitted.
        clean(&with(|vm| {
            spec(vm)["domain"]["cpu"] = json!({"cores": 1, "dedicatedCpuPlacement": true});
            spec(vm)["domain"]["resources"] = json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
        }));
        clean(&with(|vm| spec(vm)["domain"]["cpu"] = json!({"cores": 0})));
        clean(&with(|vm| {
            spec(vm)["domain"]["resources"]["requests"]["cpu"] = json!("0.5")
        }));
        clean(&with(|vm| {
            spec(vm)["domain"]["memory"] = json!({"guest": 2048})
        }));
    }

    #[test]
    fn cpu_memory_mirrors_the_rest_of_virt_api() {
        let d = "spec.template.spec.domain";
        // Sockets come from the cpu request when no topology is written.
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["cpu"] = json!({"maxSockets": 2});
                spec(vm)["domain"]["resources"]["requests"]["cpu"] = json!("4");
            }),
            &format!("{d}.cpu.sockets"),
        );
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["cpu"] = json!({"cores": 2, "dedicatedCpuPlacement": true});
                spec(vm)["domain"]["resources"] =
                    json!({"requests": {"cpu": "4", "memory": "1Gi"}});
            }),
            &format!("{d}.cpu.dedicatedCpuPlacement"),
        );
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["cpu"] =
                    json!({"cores": 1, "threads": 4, "dedicatedCpuPlacement": true});
            }),
            &format!("{d}.cpu.dedicatedCpuPlacement"),
        );
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["cpu"] = json!({"cores": 1, "dedicatedCpuPlacement": true});
                spec(vm)["domain"]["resources"]["limits"] = json!({"memory": "2Gi"});
            }),
            &format!("{d}.resources.requests.memory"),
        );
        refused(
            "cpu_memory",
            &with(|vm| spec(vm)["domain"]["cpu"]["realtime"] = json!({})),
            &format!("{d}.cpu.dedicatedCpuPlacement"),
        );
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["resources"]["limits"] = json!({"memory": "-2Gi", "cpu": "-1"})
            }),
            &format!("{d}.resources.limits.memory"),
        );
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["memory"] = json!({"guest": "1Gi", "maxGuest": "3001Mi"})
            }),
            &format!("{d}.memory.guest"),
        );
        refused(
            "cpu_memory",
            &with(|vm| {
                spec(vm)["domain"]["memory"] = json!({"maxGuest": "4Gi"});
                spec(vm)["domain"]["resources"]["requests"]["memory"] = json!("512Mi");
            }),
            &format!("{d}.memory.guest"),
        );
        refused(
            "cpu_memory",
            &with(|vm| spec(vm)["domain"]["memory"] = json!({"hugepages": {}})),
            &format!("{d}.memory.hugepages.pageSize"),
        );
        // An instancetype decides CPU and memory: nothing derived is judged.
        clean(&with(|vm| {
            vm["spec"]["instancetype"] = json!({"name": "u1.medium"});
            spec(vm)["domain"] = json!({"devices": spec(vm)["domain"]["devices"].clone(),
                "memory": {"maxGuest": "1Gi"}});
        }));
    }

    // ----- cloud_init

    #[test]
    fn cloud_init_mirrors_the_survey() {
        let at = "spec.template.spec.volumes[1].cloudInitNoCloud";
        for extra in [
            json!({"userDataBase64": "I2Nsb3VkLWNvbmZpZwo="}),
            json!({"secretRef": {"name": "cloud-init-secret"}}),
        ] {
            refused(
                "cloud_init",
                &with(|vm| {
                    let source = &mut spec(vm)["volumes"][1]["cloudInitNoCloud"];
                    for (k, v) in extra.as_object().unwrap() {
                        source[k] = v.clone();
                    }
                }),
                at,
            );
        }
        refused(
            "cloud_init",
            &with(|vm| {
                spec(vm)["volumes"][1] = json!({"name": "cloudinitdisk",
                "cloudInitConfigDrive": {"userData": USER_DATA, "userDataBase64": "I2Nsb3VkLWNvbmZpZwo="}})
            }),
            "spec.template.spec.volumes[1].cloudInitConfigDrive",
        );
        let keys = "ssh_authorized_keys:\n".to_string()
            + &"  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI user@host\n".repeat(60);
        refused(
            "cloud_init",
            &with(|vm| {
                spec(vm)["volumes"][1]["cloudInitNoCloud"]["userData"] =
                    json!(format!("#cloud-config\n{keys}"))
            }),
            at,
        );
        refused(
            "cloud_init",
            &with(|vm| {
                spec(vm)["volumes"][1]["cloudInitNoCloud"] = json!({"userDataBase64": USER_DATA})
            }),
            &format!("{at}.userDataBase64"),
        );
        refused(
            "cloud_init",
            &with(|vm| spec(vm)["volumes"][1]["cloudInitNoCloud"] = json!({})),
            at,
        );
        refused(
            "cloud_init",
            &with(|vm| {
                let source = &mut spec(vm)["volumes"][1]["cloudInitNoCloud"];
                source["networkData"] = json!("version: 2\n");
                source["networkDataBase64"] = json!("dmVyc2lvbjogMgo=");
            }),
            at,
        );
    }

    #[test]
    fn cloud_init_mirrors_the_rest_of_virt_api() {
        refused(
            "cloud_init",
            &with(|vm| {
                spec(vm)["volumes"][1]["cloudInitNoCloud"]["networkDataBase64"] =
                    json!("dmVyc2lvbjogMgo")
            }),
            "spec.template.spec.volumes[1].cloudInitNoCloud.networkDataBase64",
        );
        refused(
            "cloud_init",
            &with(|vm| {
                spec(vm)["accessCredentials"] = json!([{"sshPublicKey": {"source": {"secret": {"secretName": "k"}},
                "propagationMethod": {"configDrive": {}}}}])
            }),
            "spec.template.spec.accessCredentials[0].sshPublicKey.propagationMethod",
        );
        refused(
            "cloud_init",
            &with(|vm| spec(vm)["accessCredentials"] = json!([{}])),
            "spec.template.spec.accessCredentials[0]",
        );
        // An empty secretRef name is no source; base64 with newlines is what Go decodes.
        clean(&with(|vm| {
            let source = &mut spec(vm)["volumes"][1]["cloudInitNoCloud"];
            source["secretRef"] = json!({"name": ""});
            source["networkDataBase64"] = json!("dmVyc2lv\nbjogMgo=\r\n");
        }));
    }

    #[test]
    fn the_longest_messages_fit_one_line() {
        let long = "x".repeat(300);
        let vm = with(|vm| {
            vm["spec"]["template"]["metadata"]["labels"]["kubevirt.io/migrationTargetNodeName"] =
                json!("n");
            let s = spec(vm);
            s["volumes"][1] = json!({"name": "cloudinitdisk", "cloudInitConfigDrive": {
                "userData": long.repeat(10), "userDataBase64": long, "secretRef": {"name": "a"},
                "networkData": long.repeat(10), "networkDataBase64": long, "networkDataSecretRef": {"name": "b"}}});
            s["volumes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "sa", "serviceAccount": {}}));
            s["domain"]["devices"]["disks"][0] = json!({"name": long, "cache": long, "io": long,
                "errorPolicy": long, "serial": long, "dedicatedIOThread": true,
                "lun": {"bus": long}, "blockSize": {"custom": {"logical": u64::MAX, "physical": u64::MAX - 1}}});
            s["domain"]["devices"]["interfaces"][0] = json!({"name": long, "model": long, "macAddress": long,
                "pciAddress": long, "state": long, "masquerade": {}, "sriov": {}});
            s["domain"]["cpu"] = json!({"sockets": u32::MAX, "maxSockets": u32::MAX - 1,
                "features": [{"name": long, "policy": long}], "dedicatedCpuPlacement": true, "threads": u32::MAX});
            s["domain"]["resources"] =
                json!({"requests": {"cpu": "999999999999"}, "limits": {"cpu": "999999999998"}});
            s["domain"]["memory"] = json!({"hugepages": {"pageSize": long}});
            s["domain"]["ioThreadsPolicy"] = json!(long);
            s["hostname"] = json!(long);
            s["subdomain"] = json!(long);
            s["evictionStrategy"] = json!(long);
            s["startStrategy"] = json!(long);
            s["dnsConfig"] = json!({"nameservers": [long], "searches": [long]});
            s["topologySpreadConstraints"] = json!([{"maxSkew": i32::MIN, "topologyKey": long,
                "labelSelector": {"matchLabels": {long.as_str(): long}, "matchExpressions": [{"key": long, "operator": long, "values": [long]}]}}]);
        });
        let found = every(&vm);
        assert!(found.len() > 30, "{found:#?}");
    }

    // ----- helpers

    #[test]
    fn quantities_parse_as_kubernetes_does() {
        let ok = |s: &str| match parse_quantity(s) {
            Parsed::Ok(n) => n,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(ok("1Gi").value(), 1 << 30);
        assert_eq!(ok("1.5Gi").value(), 3 << 29);
        assert_eq!(ok("1500m").milli(), 1500);
        assert_eq!(ok("1500m").value(), 2);
        assert_eq!(ok("0.5").value(), 1);
        assert_eq!(ok("1e3").value(), 1000);
        assert_eq!(ok("1E-3").milli(), 1);
        assert_eq!(ok("+1k").value(), 1000);
        assert_eq!(ok("-1Gi").value(), -(1 << 30));
        assert_eq!(ok("1.").value(), 1);
        assert_eq!(ok(".5").milli(), 500);
        assert_eq!(ok("-").value(), 0);
        assert_eq!(ok("0001M").value(), 1_000_000);
        assert_eq!(ok("1n").0, 1);
        assert_eq!(ok("0.1n").0, 1, "rounded up to a nano");
        assert_eq!(ok("Gi").0, 0, "Go reads a bare suffix as zero");
        for bad in [
            "", "2MB", "1 Gi", "1gi", "1GB", "1ki", "1e", "1Ki3", "abc", "1.5.5",
        ] {
            assert_eq!(parse_quantity(bad), Parsed::Malformed, "{bad}");
        }
    }

    #[test]
    fn base64_is_judged_as_go_decodes_it() {
        assert_eq!(std_base64_len(""), Some(0));
        assert_eq!(std_base64_len("YQ=="), Some(1));
        assert_eq!(std_base64_len("YWI="), Some(2));
        assert_eq!(std_base64_len("YWJj"), Some(3));
        assert_eq!(std_base64_len("YW\nJj\r\n"), Some(3));
        assert_eq!(
            std_base64_len("YR=="),
            Some(1),
            "trailing bits are not checked"
        );
        for bad in [
            "YQ",
            "YQ=",
            "Y===",
            "====",
            "YQ==YQ==",
            "YW J",
            "YW-j",
            "#cloud-config",
        ] {
            assert_eq!(std_base64_len(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_and_addresses_follow_kubernetes_and_go() {
        assert!(is_dns1123_label("a") && is_dns1123_label("web-01") && is_dns1123_label("1a"));
        assert!(!is_dns1123_label("") && !is_dns1123_label("-a") && !is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d") && !is_dns1123_subdomain("a..b"));
        assert!(is_qualified_name("kubernetes.io/hostname") && is_qualified_name("My_Key.1"));
        assert!(
            !is_qualified_name("/a") && !is_qualified_name("a/b/c") && !is_qualified_name("_a")
        );
        assert!(
            is_port_name("http")
                && is_port_name("h-2")
                && !is_port_name("80")
                && !is_port_name("a--b")
        );
        assert!(
            is_mac48("02:00:00:ab:cd:ef")
                && is_mac48("02-00-00-AB-CD-EF")
                && is_mac48("0200.00ab.cdef")
        );
        assert!(
            !is_mac48("02:00:00:ab:cd")
                && !is_mac48("02:00-00:ab:cd:ef")
                && !is_mac48("02:00:00:00:00:00:00:01")
        );
        assert!(
            is_pci_address("0000:00:1f.7")
                && !is_pci_address("0000:00:1f.8")
                && !is_pci_address("00:1f.7")
        );
        assert_eq!(path_problem("/boot/vmlinuz"), None);
        assert_eq!(path_problem("/boot/"), None);
        assert!(
            path_problem("/").is_some()
                && path_problem("boot").is_some()
                && path_problem("/a//b").is_some()
        );
        assert!(
            path_problem("/a/./b").is_some()
                && path_problem("/a/../b").is_some()
                && path_problem("/a//").is_some()
        );
    }
}
