//! Starting the new process with the channel on its stdin, and taking it there.

use super::UpgradeError;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The environment variable that tells a new process it was started for an upgrade; its value
/// is the old process's id.
pub(crate) const ENV_MARKER: &str = "NATTER_UPGRADE";

/// The program file and arguments this process was started with, recorded at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Program {
    path: PathBuf,
    arg0: OsString,
    args: Vec<OsString>,
}

impl Program {
    /// Records how this process was started. Call it at start, before anything can change the
    /// working directory: argv\[0\] is made absolute against it. Symbolic links are kept, so a
    /// link switched to a new build starts the new build; only without a path in argv\[0\] (a
    /// `PATH` search) does it fall back to the running executable, which names the resolved file.
    pub(crate) fn capture() -> Result<Program, UpgradeError> {
        let mut argv = std::env::args_os();
        let arg0 = argv.next().unwrap_or_default();
        let path = if arg0.as_encoded_bytes().contains(&b'/') {
            std::path::absolute(&arg0)
        } else {
            std::env::current_exe()
        }
        .map_err(UpgradeError::ProgramPath)?;
        Ok(Program {
            path,
            arg0,
            args: argv.collect(),
        })
    }

    /// The program file that an upgrade starts.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The command that starts this program again (without the channel yet).
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        command.arg0(&self.arg0).args(&self.args);
        command
    }
}

/// Starts `command` with one end of a fresh socket pair as its stdin and [`ENV_MARKER`] set to
/// our process id; returns the child and our end, which is non-blocking (the child's is not).
pub(super) fn spawn(mut command: Command) -> Result<(Child, UnixStream), UpgradeError> {
    // Both ends are close-on-exec; std puts the child's end on its fd 0 without the flag.
    let (ours, theirs) = UnixStream::pair().map_err(UpgradeError::Channel)?;
    ours.set_nonblocking(true).map_err(UpgradeError::Channel)?;
    command
        .env(ENV_MARKER, std::process::id().to_string())
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    let spawned = command.spawn();
    let path = PathBuf::from(command.get_program());
    // Dropping the command closes our copy of the child's end, so that the child's exit shows
    // on our end as the end of the stream.
    drop(command);
    let child = spawned.map_err(|source| UpgradeError::Spawn { path, source })?;
    Ok((child, ours))
}

/// Whether this process was started for an upgrade: [`ENV_MARKER`] names our parent. A marker
/// inherited from further up names some other process and is ignored.
pub(super) fn started_for_upgrade() -> bool {
    let Some(marker) = std::env::var_os(ENV_MARKER) else {
        return false;
    };
    marker.to_str().and_then(|pid| pid.parse::<u32>().ok())
        == Some(std::os::unix::process::parent_id())
}

/// Takes the channel off fd 0 (as a close-on-exec duplicate) and puts `/dev/null` there
/// instead, as for any daemon; nothing may have read stdin before.
pub(super) fn take_stdin() -> Result<UnixStream, UpgradeError> {
    let stdin = io::stdin();
    let channel = stdin
        .as_fd()
        .try_clone_to_owned()
        .map_err(UpgradeError::Stdin)?;
    let null = File::open("/dev/null").map_err(UpgradeError::Stdin)?;
    rustix::stdio::dup2_stdin(&null).map_err(|e| UpgradeError::Stdin(e.into()))?;
    let kind = rustix::net::sockopt::socket_type(&channel);
    let family = rustix::net::sockopt::socket_domain(&channel);
    if kind != Ok(rustix::net::SocketType::STREAM) || family != Ok(rustix::net::AddressFamily::UNIX)
    {
        return Err(UpgradeError::Stdin(io::Error::other(
            "stdin is not a Unix stream socket",
        )));
    }
    Ok(UnixStream::from(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_recorded_as_an_absolute_path_with_its_arguments() {
        let program = Program::capture().unwrap();
        assert!(program.path().is_absolute(), "{:?}", program.path());
        assert!(program.path().is_file(), "{:?}", program.path());
        let command = program.command();
        let args: Vec<&std::ffi::OsStr> = command.get_args().collect();
        let ours: Vec<OsString> = std::env::args_os().skip(1).collect();
        assert_eq!(args, ours);
        assert_eq!(command.get_program(), program.path());
    }
}
