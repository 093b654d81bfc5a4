mod harness;
mod properties;
mod scenarios;
