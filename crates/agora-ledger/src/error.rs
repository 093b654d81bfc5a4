//! Why a transaction or a block was refused.

use agora_core::{Amount, DecodeError, PublicKey};

/// A transaction that was well-formed and paid its fee but could not take effect. Its only
/// effects are the fee (burned) and the nonce increment; the receipt carries this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The account lacks the funds.
    #[error("insufficient funds: need {need}, have {have}")]
    InsufficientFunds {
        /// Amount required.
        need: Amount,
        /// Amount available.
        have: Amount,
    },
    /// A computed amount would overflow.
    #[error("amount overflow: {0}")]
    Overflow(&'static str),
    /// A referenced object does not exist.
    #[error("{what} {id} does not exist")]
    NotFound {
        /// Kind of object.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The sender may not act on this object.
    #[error("not allowed: {0}")]
    Unauthorized(String),
    /// The object is not in a state that allows this action.
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// An argument breaks a rule (message says which).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl TxError {
    /// Shorthand for [`TxError::NotFound`].
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        TxError::NotFound { what, id: id.to_string() }
    }
}

/// A block that cannot be applied at all. Validators refuse to finalize such a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Height is not the next one.
    #[error("block height {got} does not follow {expected_prev}")]
    Height {
        /// Height of the last applied block.
        expected_prev: u64,
        /// Height in the block.
        got: u64,
    },
    /// Timestamp goes backwards.
    #[error("block timestamp {got} is before the previous block's {prev}")]
    Timestamp {
        /// Previous timestamp.
        prev: u64,
        /// Timestamp in the block.
        got: u64,
    },
    /// Header roots do not match the body.
    #[error("block body does not match the roots in its header")]
    BodyMismatch,
    /// A transaction in the block is not acceptable at its position.
    #[error("transaction {index} rejected: {reason}")]
    Tx {
        /// Position in the block.
        index: usize,
        /// Why.
        reason: TxRejection,
    },
    /// A misbehaviour report names someone who is not a validator.
    #[error("evidence names {0}, which has no validator stake")]
    Evidence(PublicKey),
}

/// Why a transaction cannot be included in a block (it would make the block invalid).
/// The mempool uses the same checks to refuse transactions early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxRejection {
    /// Bad signature or unknown key.
    #[error("bad signature: {0}")]
    Signature(String),
    /// Nonce is not the sender's next nonce.
    #[error("wrong nonce: expected {expected}, got {got}")]
    Nonce {
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// Fee below the minimum for its size.
    #[error("fee {fee} is below the minimum {min} for this transaction")]
    FeeTooLow {
        /// Offered fee.
        fee: Amount,
        /// Required fee.
        min: Amount,
    },
    /// The sender cannot pay the fee.
    #[error("sender cannot pay the fee {fee} (balance {balance})")]
    CannotPayFee {
        /// Fee.
        fee: Amount,
        /// Balance.
        balance: Amount,
    },
    /// Too large.
    #[error("transaction is {size} bytes, limit {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Not decodable under the canonical bounds (so no peer could accept it).
    #[error("transaction does not fit the canonical encoding's bounds ({0}); shorten the field it names")]
    Malformed(DecodeError),
}
