mod admission;
mod clearing;
mod deterrence;
mod governance;
mod harness;
mod properties;
mod scenarios;
