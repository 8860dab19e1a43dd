//! The kit run against real plugins: the local provider and the C example pass it, and the
//! faulty provider, made to fail, fails it case by case without bringing the kit down.

mod example_c;
mod faulty;
mod local;
mod support;
