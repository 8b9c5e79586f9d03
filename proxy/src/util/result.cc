#include "dotproxy/util/result.h"

namespace dotproxy {

std::string_view errcName(Errc e) noexcept {
  switch (e) {
    case Errc::Truncated:
      return "truncated";
    case Errc::BadPointer:
      return "bad-pointer";
    case Errc::PointerLoop:
      return "pointer-loop";
    case Errc::LabelTooLong:
      return "label-too-long";
    case Errc::NameTooLong:
      return "name-too-long";
    case Errc::BadLabelType:
      return "bad-label-type";
    case Errc::TrailingData:
      return "trailing-data";
    case Errc::TooLarge:
      return "too-large";
    case Errc::FormErr:
      return "formerr";
    case Errc::NotImp:
      return "notimp";
    case Errc::BadVers:
      return "badvers";
    case Errc::NotQuery:
      return "not-query";
    case Errc::NotResponse:
      return "not-response";
    case Errc::Mismatch:
      return "mismatch";
    case Errc::BadText:
      return "bad-text";
    case Errc::WantRead:
      return "want-read";
    case Errc::WantWrite:
      return "want-write";
    case Errc::Closed:
      return "closed";
    case Errc::Reset:
      return "reset";
    case Errc::IoError:
      return "io-error";
    case Errc::Timeout:
      return "timeout";
    case Errc::TlsError:
      return "tls-error";
    case Errc::TlsVerifyFailed:
      return "tls-verify-failed";
    case Errc::PinMismatch:
      return "pin-mismatch";
    case Errc::Overloaded:
      return "overloaded";
    case Errc::NoUpstream:
      return "no-upstream";
  }
  return "unknown";
}

}  // namespace dotproxy
