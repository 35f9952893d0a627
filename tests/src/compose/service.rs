//! The services of ours (`demo-api`, `extractor`, `extractor-scheduled`, `loader`) as local
//! processes: the service's own `command` (its first word is the binary, `target/debug/<name>`)
//! and `environment` (nothing else: the environment is cleared), its mounted files copied
//! with the service hostnames mapped, each `0.0.0.0:PORT` a free 127.0.0.1 port.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::Spec;
use super::stack::{Endpoint, Replica, Stack};
use crate::{Proc, free_port, repo_root};

impl Stack {
    /// Starts `scale` replicas of `service`, each with its own home and log.
    pub(super) fn start_ours(&mut self, service: &str, scale: usize) -> Result<()> {
        for i in 0..scale {
            let (mut cmd, own, log) = self.command(service, i, scale == 1)?;
            let out = File::create(&log)?;
            let child = cmd
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| format!("starting {service}"))?;
            let replica = Replica {
                proc: Proc {
                    child,
                    name: format!("{service}-{i}"),
                },
                log,
                own,
            };
            self.replicas
                .entry(service.to_owned())
                .or_default()
                .push(replica);
        }
        Ok(())
    }

    /// The local process for replica `i` of one of our services, its own endpoints and its
    /// log file. A service that runs once (`single`) is reachable by its name: the demo API
    /// as `demo-api:8080`.
    pub fn command(
        &mut self,
        service: &str,
        i: usize,
        single: bool,
    ) -> Result<(Command, BTreeMap<u16, Endpoint>, PathBuf)> {
        let spec = self.spec(service)?.clone();
        let binary = spec.command.first().context("command")?;
        let home = self.dir.join(format!("{service}-{i}"));
        std::fs::create_dir_all(&home)?;
        let mounts = self.mounts(service, &spec, &home)?;
        let mut own = BTreeMap::new();
        let mut args = Vec::new();
        for arg in &spec.command[1..] {
            if let Some(port) = arg.strip_prefix("0.0.0.0:") {
                let local = free_port()?;
                let _ = own.insert(port.parse()?, Endpoint::local(local));
                args.push(format!("127.0.0.1:{local}"));
            } else if let Some(copy) = mounts.get(arg) {
                args.push(copy.display().to_string());
            } else {
                args.push(self.map(arg));
            }
        }
        if single {
            for (port, ep) in &own {
                let _ = self
                    .endpoints
                    .insert((service.to_owned(), *port), ep.clone());
            }
        }
        let env: BTreeMap<String, String> = spec
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), self.map(v)))
            .collect();
        for text in args.iter().chain(env.values()) {
            if let Some(left) = self.unmapped(text) {
                bail!("{service}: not mapped: {left}");
            }
        }
        let mut cmd = Command::new(crate::bin(binary)?);
        let _ = cmd
            .args(&args)
            .env_clear()
            .envs(&env)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .current_dir(&home)
            .stdin(Stdio::null());
        Ok((cmd, own, self.dir.join(format!("{service}-{i}.log"))))
    }

    /// Each file `service` mounts from the repository (`./path:/target`), copied into `home`
    /// with the service hostnames in it mapped, by its target path.
    fn mounts(&self, service: &str, spec: &Spec, home: &Path) -> Result<BTreeMap<String, PathBuf>> {
        let mut mounts = BTreeMap::new();
        for volume in &spec.volumes {
            let mut parts = volume.split(':');
            let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Some(local) = source.strip_prefix("./") else {
                continue; // a named volume
            };
            let text = std::fs::read_to_string(repo_root().join(local))
                .with_context(|| format!("{service} mounts {source}"))?;
            let text = self.map(&text);
            if let Some(left) = self.unmapped(&text) {
                bail!("{service}: {source} still names a service: {left}");
            }
            let copy = home.join("mounts").join(target.trim_start_matches('/'));
            std::fs::create_dir_all(copy.parent().context("mount path")?)?;
            std::fs::write(&copy, text)?;
            let _ = mounts.insert(target.to_owned(), copy);
        }
        Ok(mounts)
    }
}
