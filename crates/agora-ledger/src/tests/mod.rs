mod admission;
mod harness;
mod properties;
mod scenarios;
