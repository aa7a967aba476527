//! Which flow an insert uses.

use crate::error::{Error, ErrorKind, Result};
use crate::model::{IdKind, KmsModel, SaveFlow};
use crate::sql::BackendKind;

/// The save flow for `model` on `backend`: the model's `save_flow` if not `auto`; `Eager`
/// when its id is known or no key's context needs it; `Prefetch` on Postgres for an integer id;
/// `AfterInsert` otherwise.
pub fn plan<M: KmsModel>(backend: BackendKind, model: &M) -> Result<SaveFlow> {
    let flow = match M::SAVE_FLOW {
        SaveFlow::Auto => {
            let no_id_needed = (0..M::KEYS.len()).all(|k| !M::context_needs_id(k));
            if model.record_id().is_some() || no_id_needed {
                SaveFlow::Eager
            } else if backend == BackendKind::Postgres && M::ID_KIND == IdKind::Integer {
                SaveFlow::Prefetch
            } else {
                SaveFlow::AfterInsert
            }
        }
        other => other,
    };
    if flow == SaveFlow::Prefetch
        && (backend != BackendKind::Postgres || M::ID_KIND != IdKind::Integer)
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}: the prefetch save flow needs Postgres and an integer id",
                M::MODEL_NAME
            ),
        ));
    }
    Ok(flow)
}

/// Whether a new data key waits to be wrapped.
pub fn any_pending<M: KmsModel>(model: &M) -> bool {
    (0..M::KEYS.len()).any(|k| model.key_column(k).is_pending())
}
