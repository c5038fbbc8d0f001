//! Telling a body read that hit its size limit from one that failed on the connection, so a
//! refusal names the right cause: an over-long body is the caller's request, a broken one is
//! not.

/// Whether `e`, or any error it wraps, is [`http_body_util::Limited`]'s "over the limit".
pub fn over_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}
