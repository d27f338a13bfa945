//! The `candidate` binary: parse, dispatch, render the error, map the exit code.

use std::process::ExitCode;

use candidate::build::BuildOptions;
use candidate::cli::{ChannelCommand, Cli, Command, KeyCommand, StoreCommand};
use candidate::fetch::Network;
use candidate::keys::PrivateKey;
use candidate::lockfile::LockMode;
use candidate::ops::{self, CheckFailed, Context};
use candidate::printer::Printer;
use candidate::store::Store;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = if err.downcast_ref::<CheckFailed>().is_some() { 1 } else { 2 };
            // A closed stdout (`candidate build … | head`) is not worth a message.
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(code);
            }
            eprint!("{}", candidate::error::render::render(&err));
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let printer = Printer::new(cli.global.quiet, cli.global.verbose, cli.global.json);
    let store_root = cli
        .global
        .store
        .or_else(Store::default_root)
        .ok_or_else(|| anyhow::anyhow!("no store: set `--store`, `XDG_CACHE_HOME` or `HOME`"))?;
    let store = Store::open(&store_root)
        .map_err(|e| anyhow::anyhow!(e).context(format!("cannot open store `{}`", store_root.display())))?;
    let mirrors = cli.global.mirrors.into_iter().collect();
    let snapshots = cli.global.snapshots.into_iter().collect();
    let ctx = Context { store, printer, mirrors, snapshots, python_index: cli.global.python_index };
    let channels = cli.global.channels.as_deref();
    let policy = cli.global.policy.as_path();
    match cli.command {
        Command::Lock { recipe, lockfile, check, allow_rollback } => {
            let mode = if check { LockMode::Check } else { LockMode::Write };
            ops::lock::lock(&ctx, &recipe, &ops::lockfile_path(&recipe, lockfile), mode, allow_rollback)?;
        }
        Command::Fetch { recipe, lockfile, bundle, from_bundle } => {
            let bundles = ops::build::Bundles { write: bundle.as_deref(), read: from_bundle.as_deref() };
            ops::build::fetch(&ctx, &recipe, &ops::lockfile_path(&recipe, lockfile), &bundles)?;
        }
        Command::Build { recipe, lockfile, out, offline, from_bundle, formats, sign } => {
            let network = if offline { Network::Offline } else { Network::Allowed };
            let sign = sign.iter().map(|k| PrivateKey::load(k)).collect::<Result<Vec<_>, _>>()?;
            let options = BuildOptions { out, network, formats: (!formats.is_empty()).then_some(formats), sign };
            let lockfile = ops::lockfile_path(&recipe, lockfile);
            ops::build::build(&ctx, &recipe, &lockfile, &options, from_bundle.as_deref())?;
        }
        Command::List { remote: None, .. } => ops::release::list(&ctx, channels)?,
        Command::List { remote: Some(remote), registry } => {
            ops::list_remote::list_remote(&ctx, &remote, &registry.access())?;
        }
        Command::Promote { candidate, channel, key, note, override_reason } => {
            let (note, override_reason) = (note.as_deref(), override_reason.as_deref());
            ops::release::promote(&ctx, &candidate, &channel, &key, note, override_reason, policy, channels)?;
        }
        Command::Channel { action: ChannelCommand::Show { name, notes, format, markdown } } => {
            let notes = notes.then_some(if markdown { candidate::release_notes::NoteFormat::Markdown } else { format });
            ops::release::show_channel(&ctx, &name, notes, policy, channels)?;
        }
        Command::Channel { action: ChannelCommand::Verify { name } } => {
            ops::release::verify_channel(&ctx, &name, policy, channels)?;
        }
        Command::Diff { a, b } => ops::diff::diff(&ctx, &a, &b)?,
        Command::Key { action: KeyCommand::Generate { out } } => ops::key::generate_key(&ctx, &out)?,
        Command::Sign { candidate, keys } => ops::key::sign(&ctx, &candidate, &keys)?,
        Command::Test { candidate, system: Some(system), report, timeout, sign, runtime, .. } => {
            let sign = sign.iter().map(|k| PrivateKey::load(k)).collect::<Result<Vec<_>, _>>()?;
            let timeout = std::time::Duration::from_secs(timeout);
            // A system runs on LXC unless LXD is asked for (the sandbox runs no system).
            let backend = match runtime {
                candidate::qualify::Runtime::Lxd => candidate::system::lxc::Backend::Lxd,
                _ => candidate::system::lxc::Backend::Lxc,
            };
            let options = ops::test_system::Options { system, report, timeout, sign, backend };
            ops::test_system::test_system(&ctx, &candidate, &options, policy, channels)?;
        }
        Command::Test { candidate, scripts, timeout, sign, runtime, .. } => {
            let sign = sign.iter().map(|k| PrivateKey::load(k)).collect::<Result<Vec<_>, _>>()?;
            let timeout = std::time::Duration::from_secs(timeout);
            let options = candidate::qualify::TestOptions { scripts, timeout, sign, runtime };
            ops::test::test(&ctx, &candidate, &options)?;
        }
        Command::Deploy { candidate, system, name, keep, runtime } => {
            let options = ops::deploy::Options { system: &system, name: name.as_deref(), keep, backend: runtime };
            ops::deploy::deploy(&ctx, &candidate, &options, policy, channels)?;
        }
        Command::Store { action: StoreCommand::Verify { repair } } => ops::store_verify::store_verify(&ctx, repair)?,
        Command::Store { action: StoreCommand::Gc { roots } } => ops::store_gc::store_gc(&ctx, &roots, channels)?,
        Command::Status { name } => ops::status::status(&ctx, name.as_deref())?,
        Command::Undeploy { name, when_stdin_closes } => ops::undeploy::undeploy(&ctx, &name, when_stdin_closes)?,
        Command::Verify { candidate, keys, threshold, rebuild, recipe, lockfile, from_bundle, sign } => {
            let rebuild = rebuild.then_some(candidate::verify::Rebuild { recipe, lockfile, from_bundle });
            ops::verify::verify(&ctx, &candidate, &keys, threshold, rebuild.as_ref(), &sign)?;
        }
        Command::Publish { channel, to, keys, keep, expires_after_days } => {
            let keep = keep as usize;
            let options = ops::publish::Options { channel: &channel, to: &to, keys: &keys, keep, expires_after_days };
            ops::publish::publish(&ctx, &options, policy, channels)?;
        }
        Command::VerifyFeed { feed, keys, threshold, ca, channel } => {
            let options =
                ops::verify_feed::Options { keys: &keys, threshold, ca: ca.as_deref(), channel: channel.as_deref() };
            ops::verify_feed::verify_feed(&ctx, &feed, &options)?;
        }
        Command::Push { candidate, reference, mount_from, chunk_size, registry } => {
            ops::push::push(&ctx, &candidate, &reference, &registry.access(), &mount_from, chunk_size)?;
        }
        Command::Pull { reference, out, keys, threshold, registry } => {
            ops::pull::pull(&ctx, &reference, &out, &registry.access(), &keys, threshold)?;
        }
    }
    Ok(())
}
