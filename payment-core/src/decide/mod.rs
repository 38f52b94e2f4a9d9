//! The pure half of **load → decide → apply**: given the state a store loaded, decide every
//! outcome and the effects to write. No I/O, no clock, no randomness but what is passed in, so the
//! exactly-once rules exist once, here, and are tested without a store.

mod deposit;
mod effects;
mod pay_orders;
mod refund_orders;

pub use deposit::{
    decide_deposit, decide_deposits, DepositDecision, DepositKeys, DepositRefusal, DepositRequest, DepositState,
    Deposited, DepositsDecision, KeyState,
};
pub use effects::{BalanceUpdate, Effects};
pub use pay_orders::{decide_payments, BatchKeys, BatchState, Decision, Outcome};

#[cfg(test)]
mod deposit_tests;
#[cfg(test)]
mod refund_tests;
#[cfg(test)]
mod tests;
