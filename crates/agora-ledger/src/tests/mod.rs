mod admission;
mod clearing;
mod deterrence;
mod harness;
mod properties;
mod scenarios;
