//! Python dependencies in a real image: Debian 12's `python3` from the local mirror
//! (benches/make-mirror.sh, `CANDIDATE_DEBIAN_MIRROR`) and real wheels — numpy, PyYAML and requests
//! with their dependencies — from a local simple index `benches/python-index.sh` makes with
//! `pip download` (pip's own configured index: nothing here names one).

use fs_err as fs;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::configure::{extract, leftovers, mirror, unsafe_umask};
use super::formats::ok;
use super::{repo, run, with_store};

/// The recipe: Debian 12 minbase + `python3`, configured, and a layer with a virtual
/// environment of the requirements `python-index.sh` wrote. `source-date-epoch` from the
/// archive.
fn python_recipe(dir: &Path, index: &Path) -> PathBuf {
    fs::create_dir_all(dir.join("recipes")).unwrap();
    fs::create_dir_all(dir.join("python")).unwrap();
    fs::copy(index.join("requirements.txt"), dir.join("python/requirements.txt")).unwrap();
    let path = dir.join("recipes/py.toml");
    fs::write(
        &path,
        format!(
            "[image]\nname = \"py\"\nversion = \"1\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"bookworm\"\n\
             source-date-epoch = \"archive\"\n\n[archive.debian]\nurl = \"file://{}\"\nsuite = \"bookworm\"\n\
             components = [\"main\"]\nkeyring = \"/usr/share/keyrings/debian-archive-keyring.gpg\"\n\n\
             [python]\nindex = \"file://{}/simple\"\n\n\
             [[layer]]\nname = \"base\"\npriority = \"required\"\npackages = [\"python3\"]\n\n\
             [[layer]]\nname = \"app\"\npython = {{ requirements = \"../python/requirements.txt\", venv = \"/opt/app/venv\" }}\n\n\
             [configure]\nmaintainer-scripts = true\n\n[output]\nformats = [\"rootfs.tar.zst\"]\n",
            mirror().display(),
            index.display(),
        ),
    )
    .unwrap();
    path
}

/// The index of real wheels (downloaded once per test run into `dir`).
fn real_index(dir: &Path) -> PathBuf {
    let index = dir.join("index");
    ok(Command::new(repo().join("benches/python-index.sh")).arg(&index));
    index
}

/// What the image's own interpreter runs in `candidate test`: each library exercised, then the
/// `pip check` equivalent — every installed distribution's top-level modules import, and
/// every requirement (whose marker does not name an extra) is installed.
const EXERCISE: &str = r#"set -e
PY=/opt/app/venv/bin/python
test "$($PY -c 'import sys; print(sys.prefix)')" = /opt/app/venv
$PY - <<'PYTHON'
import sys, importlib, importlib.metadata as md, re
import numpy, yaml, requests
a = numpy.arange(12, dtype=numpy.float64).reshape(3, 4)
assert float((a @ a.T).trace()) == 506.0, a @ a.T
assert numpy.linalg.solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]).round(6).tolist() == [0.8, 1.4]
doc = {"nodes": ["prime", "backup", "client"], "port": 8080, "nested": {"ok": True}}
assert yaml.safe_load(yaml.safe_dump(doc)) == doc
assert yaml.__with_libyaml__, "PyYAML's C extension (platlib) is not loaded"
r = requests.Request("GET", "http://prime1/value", params={"q": "1"}).prepare()
assert r.url == "http://prime1/value?q=1", r.url
# Nothing from Debian's own site-packages: the venv is isolated.
assert not any(p.startswith("/usr/lib/python3/dist-packages") for p in sys.path), sys.path
dists = list(md.distributions())
names = {d.metadata["Name"].lower().replace("_", "-") for d in dists}
for d in dists:
    tops = {f.parts[0] for f in d.files or [] if f.suffix == ".py" and ".dist-info" not in str(f) and f.parts[0] != ".."}
    for top in sorted(tops):
        importlib.import_module(top[:-3] if top.endswith(".py") else top)
    for req in d.requires or []:
        if "extra ==" in req:
            continue
        name = re.match(r"[A-Za-z0-9._-]+", req).group(0).lower().replace("_", "-")
        assert name in names, f"{d.metadata['Name']} requires {req}, which is not installed"
assert len(dists) == 7, sorted(names)
PYTHON
"#;

/// Builds the configured image twice — another path, store, umask and TZ — and checks:
/// bit-identical outputs (`.pyc` included), the wheels listed in the manifest, the installed
/// file set equal to `pip install --target`'s, and the venv working in `candidate test`.
#[test]
#[ignore = "needs a local Debian 12 mirror (benches/make-mirror.sh) and pip download; .ci/run runs it"]
fn real_python_venv_is_reproducible_and_works() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::Builder::new().prefix("elsewhere-").tempdir().unwrap();
    let index = real_index(a.path());
    let (ra, rb) = (python_recipe(a.path(), &index), python_recipe(b.path(), &index));
    let (sa, sb) = (a.path().join("store"), b.path().join("store"));
    run(with_store(a.path(), &sa, ["lock".as_ref(), ra.as_os_str()])).assert_ok();
    let lock = a.path().join("lockfiles/py.lock");
    ok(Command::new(repo().join("benches/extend-mirror.sh")).arg(&lock).arg(mirror()));
    fs::create_dir_all(b.path().join("lockfiles")).unwrap();
    fs::copy(&lock, b.path().join("lockfiles/py.lock")).unwrap();
    let lock_text = fs::read_to_string(&lock).unwrap();
    let requirements = fs::read_to_string(index.join("requirements.txt")).unwrap();
    let pinned: BTreeSet<String> = requirements
        .lines()
        .filter_map(|l| l.strip_suffix(" \\"))
        .map(|l| l.split_once("==").map(|(n, v)| format!("{n} {v}")).unwrap())
        .collect();
    assert_eq!(pinned.len(), 7, "{requirements}");

    let mut first = with_store(a.path(), &sa, ["build".as_ref(), ra.as_os_str()]);
    first.env("TZ", "UTC");
    unsafe_umask(&mut first, 0o022);
    run(first).assert_ok();
    let mut second = with_store(b.path(), &sb, ["build".as_ref(), rb.as_os_str()]);
    second.env("TZ", "Pacific/Auckland").env("LC_ALL", "C");
    unsafe_umask(&mut second, 0o077);
    run(second).assert_ok();
    let (da, db) = (a.path().join("dist/py_1_amd64"), b.path().join("dist/py_1_amd64"));
    for file in ["manifest.json", "rootfs.tar.zst", "sbom.spdx.json", "sbom.cdx.json"] {
        assert_eq!(fs::read(da.join(file)).unwrap(), fs::read(db.join(file)).unwrap(), "{file} differs");
    }

    // The manifest and the SBOMs list every wheel, as the lockfile pins it.
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(da.join("manifest.json")).unwrap()).unwrap();
    let listed: BTreeSet<String> = manifest["wheels"]
        .as_array()
        .unwrap_or_else(|| panic!("the manifest lists no wheels: {manifest}"))
        .iter()
        .map(|w| format!("{} {}", w["name"].as_str().unwrap(), w["version"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, pinned);
    for w in manifest["wheels"].as_array().unwrap() {
        assert!(lock_text.contains(w["sha256"].as_str().unwrap()), "{w} is not the locked wheel");
    }
    for file in ["sbom.spdx.json", "sbom.cdx.json"] {
        let sbom = fs::read_to_string(da.join(file)).unwrap();
        for p in &pinned {
            let (name, version) = p.split_once(' ').unwrap();
            assert!(sbom.contains(&format!("pkg:pypi/{name}@{version}")), "{file} has no purl for {p}");
        }
    }

    // The installed tree: byte-code made by the image's interpreter in configure mode, and the
    // same files as pip installs from the same wheels (modulo pip's own records).
    let root = a.path().join("root");
    extract(&da.join("rootfs.tar.zst"), &root);
    let venv = root.join("opt/app/venv");
    let site = venv.join("lib/python3.11/site-packages");
    assert!(site.join("yaml/__pycache__/__init__.cpython-311.pyc").is_file(), "no byte-code in the venv");
    let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    assert!(cfg.contains("include-system-site-packages = false"), "{cfg}");
    assert_eq!(fs::read_link(venv.join("bin/python3.11")).unwrap(), Path::new("/usr/bin/python3.11"));
    let target = a.path().join("pip-target");
    ok(Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"])
        .args(["--require-hashes", "--no-index", "--no-compile", "--find-links"])
        .arg(index.join("wheels"))
        .arg("--target")
        .arg(&target)
        .arg("-r")
        .arg(index.join("requirements.txt")));
    let files = |dir: &Path, skip: &dyn Fn(&str) -> bool| -> BTreeSet<String> {
        super::walk(dir)
            .into_iter()
            .filter(|p| !p.is_dir() || p.is_symlink())
            .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
            .filter(|p| !p.contains("__pycache__/") && !skip(p))
            .collect()
    };
    let pip_own = |p: &str| p.ends_with(".dist-info/direct_url.json") || p.ends_with(".dist-info/REQUESTED");
    let pip: BTreeSet<String> = files(&target, &|p| pip_own(p) || p.starts_with("bin/"));
    let ours: BTreeSet<String> = files(&site, &|_| false);
    let (only_pip, only_ours): (Vec<_>, Vec<_>) = (pip.difference(&ours).collect(), ours.difference(&pip).collect());
    assert!(only_pip.is_empty() && only_ours.is_empty(), "pip --target only: {only_pip:?}\nours only: {only_ours:?}");
    let pip_scripts = files(&target.join("bin"), &|_| false);
    let our_scripts = files(&venv.join("bin"), &|p| p.starts_with("python") || p.starts_with("activate"));
    assert_eq!(our_scripts, pip_scripts, "console scripts differ from pip's");
    assert!(our_scripts.contains("normalizer"), "{our_scripts:?}");

    // The image's own interpreter uses them, in a fresh instance.
    let script = a.path().join("exercise.sh");
    fs::write(&script, EXERCISE).unwrap();
    let tested = run(with_store(a.path(), &sa, ["test", da.to_str().unwrap(), "--script", script.to_str().unwrap()]));
    tested.assert_ok();

    // Warm: nothing is rebuilt.
    let warm = run(with_store(a.path(), &sa, ["build".as_ref(), ra.as_os_str()]));
    warm.assert_ok();
    assert!(warm.stderr.contains("Fresh layer app"), "{}", warm.describe());
    assert_eq!(leftovers(&sa), Vec::<PathBuf>::new());
    assert_eq!(leftovers(&sb), Vec::<PathBuf>::new());
}
