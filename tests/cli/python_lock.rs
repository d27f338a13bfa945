//! `candidate lock` of python layers, through the binary: the recipe's rules for `python`,
//! the interpreter the image must lock, and the index it must be given. (Choosing wheels is
//! tested against fixture indexes in `python::lock`; the real-archive image is the lead's.)

use std::path::Path;

use fs_err as fs;

use super::{run, with_store, Run};

const H: &str = "0569859f95fc761b18b45ef421b1290a0f65f147e92a1e5eb3e635f9a5e4e66f";

/// A recipe whose layer `app` has `python = {PYTHON}` (and `EXTRA` lines), beside a pinned
/// `requirements.txt`; returns the `lock` run.
fn lock(dir: &Path, python: &str, extra: &str, env_index: Option<&str>) -> Run {
    fs::create_dir_all(dir.join("recipes")).unwrap();
    fs::write(dir.join("requirements.txt"), format!("six==1.16.0 --hash=sha256:{H}\n")).unwrap();
    let recipe = format!(
        "[image]\nname = \"py\"\nversion = \"1.0\"\narchitecture = \"amd64\"\nos = \"debian\"\nrelease = \"stable\"\n\
         source-date-epoch = 0\n\n[[layer]]\nname = \"app\"\npython = {python}\n{extra}\n[output]\nformats = [\"rootfs.tar\"]\n"
    );
    fs::write(dir.join("recipes/py.toml"), recipe).unwrap();
    let mut cmd = with_store(dir, &dir.join("store"), ["lock", "recipes/py.toml"]);
    if let Some(index) = env_index {
        cmd.env("CANDIDATE_PYTHON_INDEX", index);
    } else {
        cmd.env_remove("CANDIDATE_PYTHON_INDEX");
    }
    run(cmd)
}

#[test]
fn a_python_layer_needs_a_locked_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    let r = lock(dir.path(), "{ requirements = \"../requirements.txt\", venv = \"/opt/app/venv\" }", "", Some("index"));
    r.assert_code(2).assert_stderr_has("error: layer `app` installs Python wheels").assert_stderr_has(
        "the lockfile has no Python interpreter for `amd64`: no `python3.X` or `python3.X-minimal` package is locked",
    );
    assert!(
        !dir.path().join("lockfiles/py.lock").exists() && !dir.path().join("recipes/py.lock").exists(),
        "nothing is written"
    );
}

#[test]
fn the_recipe_refuses_two_sources_and_packages_beside_python() {
    let dir = tempfile::tempdir().unwrap();
    let both = "{ requirements = \"../requirements.txt\", lock = \"../pylock.toml\", venv = \"/opt/app/venv\" }";
    lock(dir.path(), both, "", None)
        .assert_code(2)
        .assert_stderr_has("layer `app`: `python` takes exactly one of `requirements` (a pinned requirements file) and `lock` (a `pylock.toml`)");
    let neither = "{ venv = \"/opt/app/venv\" }";
    lock(dir.path(), neither, "", None).assert_code(2).assert_stderr_has("takes exactly one of `requirements`");
    let one = "{ requirements = \"../requirements.txt\", venv = \"/opt/app/venv\" }";
    lock(dir.path(), one, "packages = [\"python3\"]", None).assert_code(2).assert_stderr_has(
        "layer `app` has both Debian packages and `python`: install the interpreter in a layer below the python layer",
    );
}
