import CCurl
import CCurlShim

// Typed doors to CCurlShim's non-variadic setopt/getinfo. Everything that touches a curl
// handle goes through here or through CurlLoop, on the engine's loop thread.

typealias EasyHandle = UnsafeMutableRawPointer
typealias MultiHandle = UnsafeMutableRawPointer

extension CURLoption {
    var code: Int32 { Int32(bitPattern: rawValue) }
}

extension CURLMoption {
    var code: Int32 { Int32(bitPattern: rawValue) }
}

extension CURLINFO {
    var code: Int32 { Int32(bitPattern: rawValue) }
}

enum Easy {
    @discardableResult
    static func set(_ easy: EasyHandle, _ option: CURLoption, _ value: Int) -> Int32 {
        llmspool_curl_easy_setopt_long(easy, option.code, value)
    }

    @discardableResult
    static func set(_ easy: EasyHandle, _ option: CURLoption, _ value: Bool) -> Int32 {
        llmspool_curl_easy_setopt_long(easy, option.code, value ? 1 : 0)
    }

    /// A string option; libcurl keeps its own copy.
    @discardableResult
    static func set(_ easy: EasyHandle, _ option: CURLoption, _ value: String) -> Int32 {
        value.withCString { llmspool_curl_easy_setopt_pointer(easy, option.code, $0) }
    }

    /// A pointer option; the pointee must outlive the transfer.
    @discardableResult
    static func set(_ easy: EasyHandle, _ option: CURLoption, pointer value: UnsafeRawPointer?) -> Int32 {
        llmspool_curl_easy_setopt_pointer(easy, option.code, value)
    }

    @discardableResult
    static func set(_ easy: EasyHandle, _ option: CURLoption, offset value: Int64) -> Int32 {
        llmspool_curl_easy_setopt_off_t(easy, option.code, value)
    }

    @discardableResult
    static func set(
        _ easy: EasyHandle, _ option: CURLoption,
        callback: @escaping @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int
    ) -> Int32 {
        llmspool_curl_easy_setopt_write_callback(easy, option.code, callback)
    }

    static func long(_ easy: EasyHandle, _ info: CURLINFO) -> Int {
        var value = 0
        _ = llmspool_curl_easy_getinfo_long(easy, info.code, &value)
        return value
    }

    static func offset(_ easy: EasyHandle, _ info: CURLINFO) -> Int64 {
        var value: Int64 = 0
        _ = llmspool_curl_easy_getinfo_off_t(easy, info.code, &value)
        return value
    }

    static func pointer(_ easy: EasyHandle, _ info: CURLINFO) -> UnsafeMutableRawPointer? {
        var value: UnsafeMutableRawPointer?
        _ = llmspool_curl_easy_getinfo_pointer(easy, info.code, &value)
        return value
    }
}

enum Multi {
    @discardableResult
    static func set(_ multi: MultiHandle, _ option: CURLMoption, _ value: Int) -> Int32 {
        llmspool_curl_multi_setopt_long(multi, option.code, value)
    }

    @discardableResult
    static func set(_ multi: MultiHandle, _ option: CURLMoption, pointer value: UnsafeMutableRawPointer?) -> Int32 {
        llmspool_curl_multi_setopt_pointer(multi, option.code, value)
    }
}
