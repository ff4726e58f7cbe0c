//! `check` end to end: one typical VM, and a 10,000-VM multi-document YAML stream checked versus
//! only parsed (YAML → documents), so the cost the rules add is visible as a ratio.
//!
//! `cargo bench --bench check` (prints VMs/s and the check/parse ratio before criterion's figures).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use virt_preflight::check::{CheckOptions, check_all};
use virt_preflight::manifest::parse_text;

const VMS: usize = 10_000;

/// A VM as people write them: container disk, cloud-init, a DataVolume template, a network.
fn typical_vm(i: usize) -> String {
    format!(
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: vm-{i}
  namespace: team-{ns}
  labels:
    app: web
spec:
  runStrategy: Always
  dataVolumeTemplates:
    - metadata:
        name: vm-{i}-data
      spec:
        storage:
          accessModes: [ReadWriteOnce]
          resources:
            requests:
              storage: 20Gi
        source:
          blank: {{}}
  template:
    metadata:
      labels:
        kubevirt.io/vm: vm-{i}
    spec:
      nodeSelector:
        kubernetes.io/os: linux
      domain:
        cpu:
          cores: 2
        memory:
          guest: 4Gi
        resources:
          requests:
            memory: 4Gi
            cpu: 500m
          limits:
            memory: 6Gi
        devices:
          disks:
            - name: root
              bootOrder: 1
              disk:
                bus: virtio
            - name: data
              disk:
                bus: virtio
            - name: cloudinit
              disk:
                bus: virtio
          interfaces:
            - name: default
              masquerade: {{}}
      networks:
        - name: default
          pod: {{}}
      volumes:
        - name: root
          containerDisk:
            image: quay.io/containerdisks/fedora:41
        - name: data
          dataVolume:
            name: vm-{i}-data
        - name: cloudinit
          cloudInitNoCloud:
            userData: |
              #cloud-config
              hostname: vm-{i}
"#,
        ns = i % 50
    )
}

fn stream(count: usize) -> String {
    (0..count).map(typical_vm).collect::<Vec<_>>().join("---\n")
}

fn parse_only(file: &Arc<str>, text: &str) -> usize {
    parse_text(file, text).len()
}

fn check(file: &Arc<str>, text: &str, options: &CheckOptions) -> usize {
    let report = check_all(parse_text(file, text), options);
    let summary = report.summary();
    assert_eq!(summary.errors, 0, "typical VMs are clean");
    summary.objects
}

/// Best of a few runs of `f`: the figure criterion's estimates should agree with.
fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn summary(file: &Arc<str>, text: &str, options: &CheckOptions) {
    let parse = best_of(5, || {
        black_box(parse_only(file, text));
    });
    let checked = best_of(5, || {
        black_box(check(file, text, options));
    });
    let per_second = |d: Duration| VMS as f64 / d.as_secs_f64();
    println!(
        "{VMS} VMs ({:.1} MiB): parse only {:.0} VMs/s, check {:.0} VMs/s, check runs at {:.1} % of parse speed",
        text.len() as f64 / (1024.0 * 1024.0),
        per_second(parse),
        per_second(checked),
        100.0 * parse.as_secs_f64() / checked.as_secs_f64()
    );
}

fn benches(c: &mut Criterion) {
    let file: Arc<str> = Arc::from("bench.yaml");
    let options = CheckOptions::default();
    let one = typical_vm(0);
    assert_eq!(check(&file, &one, &options), 1);

    let many = stream(VMS);
    assert_eq!(parse_only(&file, &many), VMS);
    summary(&file, &many, &options);

    c.bench_function("check one typical VM (parse + rules)", |b| {
        b.iter(|| check(&file, black_box(&one), &options))
    });

    // The webhook's own work per request, without TLS and HTTP: parse the AdmissionReview,
    // review it, write the response.
    let object: serde_json::Value = serde_saphyr::from_str(&one).expect("typical VM");
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "b8a3b1c0-0000-4000-8000-000000000001",
            "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"},
            "resource": {"group": "kubevirt.io", "version": "v1", "resource": "virtualmachines"},
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "namespace": "team-0", "operation": "CREATE", "object": object}
    }))
    .expect("serializes");
    let policy = virt_preflight::policy::Policy::default();
    let mut review = c.benchmark_group("webhook review of one typical VM");
    review.bench_function("parse AdmissionReview (its object into the model)", |b| {
        b.iter(|| virt_preflight::admission::parse_review(black_box(&body)).expect("review"))
    });
    let request = virt_preflight::admission::parse_review(&body).expect("review");
    review.bench_function("review (rules + policy)", |b| {
        b.iter(|| virt_preflight::admission::review(black_box(&request), None, &policy))
    });
    let vm = virt_preflight::model::VirtualMachine::from_value(&object).expect("typical VM");
    let reference =
        virt_preflight::rules::finding::ObjectRef::virtual_machine(&vm, Some("team-0"), "default");
    let text = object.to_string();
    review.bench_function("model from JSON text", |b| {
        b.iter(|| virt_preflight::model::VirtualMachine::from_json(black_box(&text)).expect("VM"))
    });
    review.bench_function("rules on the model", |b| {
        b.iter(|| virt_preflight::rules::evaluate(black_box(&vm), &reference, None))
    });
    review.bench_function("parse + review + response", |b| {
        b.iter(|| {
            let request =
                virt_preflight::admission::parse_review(black_box(&body)).expect("review");
            let verdict = virt_preflight::admission::review(&request, None, &policy);
            serde_json::to_vec(&verdict.response(&request).into_review()).expect("serializes")
        })
    });
    review.finish();

    let mut group = c.benchmark_group("10k VM stream");
    group.throughput(Throughput::Elements(VMS as u64));
    group.sample_size(10);
    group.bench_function("parse only", |b| {
        b.iter(|| parse_only(&file, black_box(&many)))
    });
    group.bench_function("check", |b| {
        b.iter(|| check(&file, black_box(&many), &options))
    });
    group.finish();
}

criterion_group!(check_benches, benches);
criterion_main!(check_benches);
