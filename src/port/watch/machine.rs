//! What a qemu's lifecycle means for its port, sans I/O: QMP messages in
//! (`qmp.rs`), at most one [`Action`] per message out.
//!
//! A qemu is a migration's source or its destination, and the watcher
//! learns which from qemu alone: an incoming qemu reports `inmigrate` when
//! asked at connect; a running one that starts migrating reports
//! `MIGRATION` setup/active. The actions (carried out by the bridge,
//! `bridge/dual.rs`):
//! - destination: [`Action::Expect`] while the guest is on its way (at
//!   connect, again when its migration starts; frames
//!   for it from the mesh are delivered to the port even though the mesh
//!   still has it elsewhere), then [`Action::Claim`] at `RESUME`, when the
//!   guest runs here: the MAC is claimed as `ctl announce` would;
//! - source: [`Action::Depart`] when the migration starts (the bridge keeps
//!   copies of the last frames for the guest), [`Action::Stopped`] at
//!   `STOP` (the guest reads nothing more here: every frame for it is kept
//!   until the mesh says where it went, then sent there), and
//!   [`Action::Stay`] when the migration failed and the guest runs here
//!   again (the copies are dropped).

use super::qmp::{Event, MigrationStatus, Msg, RunState};
use crate::wire::MacAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Expect,
    Claim,
    Depart,
    Stopped,
    Stay,
    /// The incoming guest will not come (qemu went away before `RESUME`):
    /// the expectation ends.
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Connected, run state not known yet (or not connected).
    #[default]
    Unknown,
    Running,
    /// An incoming qemu: the migration's destination.
    Incoming,
    /// A running guest that is migrating away: the source.
    Departing,
    Paused,
}

/// One qemu's state as seen through its QMP socket.
#[derive(Debug, Default)]
pub struct Machine {
    role: Role,
    /// The NICs' MACs from `query-rx-filter`.
    macs: Vec<MacAddr>,
    /// `Expect` waits for the MACs (asked right after the run state).
    expect_pending: bool,
}

impl Machine {
    pub fn role(&self) -> Role {
        self.role
    }

    pub fn macs(&self) -> &[MacAddr] {
        &self.macs
    }

    /// A new connection: nothing known until qemu answers.
    pub fn connected(&mut self) {
        *self = Machine::default();
    }

    /// The socket went away. A departing guest's copies stay (a source
    /// qemu quits once its guest left, often before the destination
    /// claimed it; the bridge bounds them); an expected one is not coming.
    pub fn disconnected(&mut self) -> Option<Action> {
        let was = self.role;
        self.role = Role::Unknown;
        self.expect_pending = false;
        (was == Role::Incoming).then_some(Action::Gone)
    }

    pub fn on_msg(&mut self, msg: &Msg) -> Option<Action> {
        match msg {
            Msg::Status(s) => {
                self.role = match s {
                    RunState::Running => Role::Running,
                    RunState::InMigrate => Role::Incoming,
                    RunState::PostMigrate | RunState::Paused => Role::Paused,
                };
                self.expect_pending = self.role == Role::Incoming;
                None
            }
            Msg::Macs(m) => {
                self.macs = m.clone();
                self.take_expect()
            }
            Msg::CommandError { id, .. } if id == super::qmp::ID_RX_FILTER => {
                // No MACs from qemu: the port's policy or its learned
                // clients will have to do.
                self.take_expect()
            }
            Msg::Event(e) => self.on_event(e),
            _ => None,
        }
    }

    fn take_expect(&mut self) -> Option<Action> {
        let pending = std::mem::take(&mut self.expect_pending);
        (pending && self.role == Role::Incoming).then_some(Action::Expect)
    }

    fn on_event(&mut self, e: &Event) -> Option<Action> {
        match (self.role, e) {
            (Role::Incoming, Event::Resume) => {
                self.role = Role::Running;
                Some(Action::Claim)
            }
            (Role::Incoming, Event::Shutdown) => {
                self.role = Role::Paused;
                Some(Action::Gone)
            }
            // The guest starts coming: expected from now (the bound of
            // dual delivery counts from here, not from qemu's start,
            // which can be long before).
            (
                Role::Incoming,
                Event::Migration(MigrationStatus::Setup | MigrationStatus::Active),
            ) => Some(Action::Expect),
            (Role::Incoming, _) => None,
            (Role::Running, Event::Migration(MigrationStatus::Setup | MigrationStatus::Active)) => {
                self.role = Role::Departing;
                Some(Action::Depart)
            }
            (Role::Departing, Event::Stop) => Some(Action::Stopped),
            (Role::Departing, Event::Resume) => {
                // The migration failed or was cancelled: the guest runs
                // here again.
                self.role = Role::Running;
                Some(Action::Stay)
            }
            (Role::Departing, Event::Migration(MigrationStatus::Completed)) => {
                // Gone from here; the copies wait for the destination's
                // claim (or the bound).
                self.role = Role::Paused;
                None
            }
            (Role::Departing, _) => None,
            (_, Event::Resume) => {
                self.role = Role::Running;
                None
            }
            (_, Event::Stop | Event::Shutdown) => {
                self.role = Role::Paused;
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MigrationStatus as M;

    fn ev(e: Event) -> Msg {
        Msg::Event(e)
    }

    fn run(m: &mut Machine, msgs: &[Msg]) -> Vec<Action> {
        msgs.iter().filter_map(|x| m.on_msg(x)).collect()
    }

    fn mac() -> MacAddr {
        "52:54:00:4d:57:01".parse().unwrap()
    }

    #[test]
    fn destination_expects_then_claims_at_resume() {
        let mut m = Machine::default();
        m.connected();
        let got = run(
            &mut m,
            &[
                Msg::Greeting,
                Msg::CapabilitiesOk,
                Msg::Status(RunState::InMigrate),
                Msg::Macs(vec![mac()]),
                // The incoming side reports the migration too.
                ev(Event::Migration(M::Setup)),
                ev(Event::Migration(M::Active)),
                ev(Event::Migration(M::Completed)),
                ev(Event::Resume),
                // Later pauses and resumes are no migration.
                ev(Event::Stop),
                ev(Event::Resume),
            ],
        );
        assert_eq!(
            got,
            vec![
                Action::Expect,
                Action::Expect,
                Action::Expect,
                Action::Claim
            ]
        );
        assert_eq!(m.macs(), &[mac()]);
        assert_eq!(m.role(), Role::Running);
    }

    #[test]
    fn destination_without_rx_filter_still_expects() {
        let mut m = Machine::default();
        let got = run(
            &mut m,
            &[
                Msg::Status(RunState::InMigrate),
                Msg::CommandError {
                    id: super::super::qmp::ID_RX_FILTER.into(),
                    class: "GenericError".into(),
                },
                ev(Event::Resume),
            ],
        );
        assert_eq!(got, vec![Action::Expect, Action::Claim]);
        assert!(m.macs().is_empty());
    }

    #[test]
    fn source_departs_stops_and_keeps_its_copies_when_gone() {
        let mut m = Machine::default();
        let got = run(
            &mut m,
            &[
                Msg::Status(RunState::Running),
                Msg::Macs(vec![mac()]),
                ev(Event::Migration(M::Setup)),
                ev(Event::Migration(M::Active)),
                ev(Event::Migration(M::Switchover)),
                ev(Event::Stop),
                ev(Event::Migration(M::Completed)),
                ev(Event::Shutdown),
            ],
        );
        assert_eq!(got, vec![Action::Depart, Action::Stopped]);
        assert_eq!(m.disconnected(), None);
    }

    #[test]
    fn a_failed_migration_stays() {
        let mut m = Machine::default();
        let got = run(
            &mut m,
            &[
                Msg::Status(RunState::Running),
                ev(Event::Migration(M::Active)),
                ev(Event::Stop),
                ev(Event::Migration(M::Failed)),
                ev(Event::Resume),
                // And a second attempt departs again.
                ev(Event::Migration(M::Active)),
            ],
        );
        assert_eq!(
            got,
            vec![
                Action::Depart,
                Action::Stopped,
                Action::Stay,
                Action::Depart
            ]
        );
    }

    #[test]
    fn an_incoming_qemu_that_goes_away_is_gone() {
        let mut m = Machine::default();
        assert_eq!(
            run(
                &mut m,
                &[Msg::Status(RunState::InMigrate), Msg::Macs(vec![])]
            ),
            vec![Action::Expect]
        );
        assert_eq!(m.disconnected(), Some(Action::Gone));
        // Reconnected to a qemu that is now running: nothing to do.
        m.connected();
        assert!(run(&mut m, &[Msg::Status(RunState::Running), ev(Event::Resume)]).is_empty());
        let mut m = Machine::default();
        let got = run(
            &mut m,
            &[Msg::Status(RunState::InMigrate), ev(Event::Shutdown)],
        );
        assert_eq!(got, vec![Action::Gone]);
    }

    #[test]
    fn events_before_the_run_state_or_out_of_order_do_nothing() {
        let mut m = Machine::default();
        let got = run(
            &mut m,
            &[
                ev(Event::Stop),
                ev(Event::Migration(M::Completed)),
                ev(Event::Resume),
                Msg::Macs(vec![mac()]),
                ev(Event::Other("POWERDOWN".into())),
                Msg::Other,
                Msg::Greeting,
            ],
        );
        assert!(got.is_empty(), "{got:?}");
    }
}
