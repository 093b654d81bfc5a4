//! Accounts: balances, nonces, transfers and fees.
//!
//! Fees are **burned**, not paid to the proposer: a proposer then gains nothing from stuffing
//! blocks with its own transactions or reordering for fees, and the fee works as a plain
//! spam price. (Validators are rewarded through audit fees, not block fees.)

use crate::error::{TxError, TxRejection};
use crate::events::Event;
use crate::state::{Ctx, State};
use agora_core::codec::DecodeErrorKind;
use agora_core::tx::SignedTx;
use agora_core::{AccountId, Amount, codec_struct};
use serde::{Deserialize, Serialize};

/// A spendable balance and the next expected nonce.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Spendable funds.
    pub balance: Amount,
    /// Nonce the next transaction from this account must carry.
    pub nonce: u64,
    /// Who created this account with a transfer, and when (`None` for genesis accounts and
    /// accounts first credited by the protocol itself).
    pub funded_by: Option<Funding>,
}
codec_struct!(Account { balance, nonce, funded_by });

/// The transfer that created an account: the funding source auditor selection looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Funding {
    /// The sender of the first transfer into the account.
    pub from: AccountId,
    /// The height of the block that held it.
    pub height: u64,
}
codec_struct!(Funding { from, height });

/// Whether `a` and `b` are visibly one party by their funding: one created the other, or both
/// were created by the same sender in the same block (a batch of Sybil identities). A
/// laundering chain of intermediate accounts defeats this check; weighting auditors by bonded
/// stake is what bounds such an adversary (see `audits`).
pub fn related(state: &State, a: &AccountId, b: &AccountId) -> bool {
    let funding = |x: &AccountId| state.account(x).and_then(|acct| acct.funded_by);
    let (fa, fb) = (funding(a), funding(b));
    a == b
        || fa.is_some_and(|f| f.from == *b)
        || fb.is_some_and(|f| f.from == *a)
        || fa.is_some_and(|f| fb == Some(f))
}

/// The least fee a transaction of `size` encoded bytes must pay.
pub fn min_fee(state: &State, size: usize) -> Amount {
    let p = state.params();
    Amount(p.min_fee.saturating_add(p.fee_per_byte.saturating_mul(size as u128)))
}

/// Checks what makes a transaction includable at all — size, signature, nonce, fee —
/// without changing state. The block builder calls this; the mempool calls
/// [`check_except_nonce`] and applies its own nonce window.
pub fn check_admission(state: &State, tx: &SignedTx) -> Result<(), TxRejection> {
    check_admission_with(state, tx, true)
}

/// [`check_admission`], skipping the signature check when `verify_signature` is false — for
/// callers that already verified this exact (transaction, signature) pair.
pub fn check_admission_with(state: &State, tx: &SignedTx, verify_signature: bool) -> Result<(), TxRejection> {
    check_except_nonce_with(state, tx, verify_signature)?;
    let expected = state.nonce(&tx.tx.sender);
    if tx.tx.nonce != expected {
        return Err(TxRejection::Nonce { expected, got: tx.tx.nonce });
    }
    Ok(())
}

/// Shape (the canonical bounded decoder accepts it), size, signature, minimum fee and the
/// sender's ability to pay it.
///
/// Every admission path (JSON or hex from the API, gossip, the gateway, the block builder)
/// goes through here, so a transaction that passes can be decoded by every peer.
pub fn check_except_nonce(state: &State, tx: &SignedTx) -> Result<(), TxRejection> {
    check_except_nonce_with(state, tx, true)
}

/// [`check_except_nonce`] for a transaction whose signature the caller already checked for
/// this chain.
pub fn check_except_nonce_signed(state: &State, tx: &SignedTx) -> Result<(), TxRejection> {
    check_except_nonce_with(state, tx, false)
}

fn check_except_nonce_with(state: &State, tx: &SignedTx, verify_signature: bool) -> Result<(), TxRejection> {
    // One encoding serves the size limit (checked first, by decode_untrusted) and the shape.
    let size = tx.check_canonical().map_err(|e| match e.kind {
        DecodeErrorKind::TooLong { len, max } if e.context == "SignedTx" => {
            TxRejection::TooLarge { size: len as usize, max: max as usize }
        }
        _ => TxRejection::Malformed(e),
    })?;
    if verify_signature {
        tx.verify(&state.meta().chain_id).map_err(|e| TxRejection::Signature(e.to_string()))?;
    }
    let min = min_fee(state, size);
    if tx.tx.fee < min {
        return Err(TxRejection::FeeTooLow { fee: tx.tx.fee, min });
    }
    let balance = state.balance(&tx.tx.sender);
    if balance < tx.tx.fee {
        return Err(TxRejection::CannotPayFee { fee: tx.tx.fee, balance });
    }
    Ok(())
}

/// Charges the fee (burned) and advances the nonce. Precondition: [`check_admission`] passed.
pub(crate) fn charge(state: &mut State, cx: &mut Ctx, tx: &SignedTx) {
    let sender = tx.tx.sender;
    state.debit(&sender, tx.tx.fee).expect("admission checked the fee is payable");
    let s = &mut state.meta_mut().supply;
    s.burned = s.burned.checked_add(tx.tx.fee).expect("bounded by supply");
    state.accounts.get_mut(&sender).expect("the fee payer exists").nonce += 1;
    if !tx.tx.fee.is_zero() {
        cx.emit(Event::FeeBurned { payer: sender, amount: tx.tx.fee });
    }
}

/// Moves `amount` from `from` to `to`.
pub(crate) fn transfer(
    state: &mut State,
    cx: &mut Ctx,
    from: AccountId,
    to: AccountId,
    amount: Amount,
) -> Result<(), TxError> {
    if amount.is_zero() {
        return Err(TxError::Invalid("transfer amount must be positive".into()));
    }
    let new = state.account(&to).is_none();
    state.debit(&from, amount)?;
    state.credit(&to, amount);
    if new {
        let acct = state.accounts.get_mut(&to).expect("just credited a positive amount");
        acct.funded_by = Some(Funding { from, height: cx.height });
    }
    cx.emit(Event::Transfer { from, to, amount });
    Ok(())
}
