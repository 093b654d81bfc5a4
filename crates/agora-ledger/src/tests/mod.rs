mod admission;
mod auditors;
mod clearing;
mod deterrence;
mod governance;
mod harness;
mod properties;
mod scenarios;
