/* gst-phone-agent: export macro for the internal shared library */
#pragma once

#if defined(BUILDING_PHONEAGENT)
#define PA_API __attribute__((visibility("default")))
#else
#define PA_API
#endif
